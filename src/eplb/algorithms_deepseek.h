// DeepSeek's expert-parallel load balancer (deepseek-ai/EPLB eplb.py), re-implemented in C++
// with the same results, tie-breaking included:
//   - weights are float32 (eplb.py casts the counts with .float()), sums and divisions in float32;
//   - balanced_packing visits items in the order of torch.sort(descending=True), which on CPU is
//     std::sort over (value, index) pairs comparing values only (not stable: equal weights come
//     out in introsort order; for 16 items or fewer that is index order). We call the same
//     std::sort, so ties break as in PyTorch built with libstdc++ (checked against PyTorch 2.x on
//     x86-64 in tests/data/eplb/deepseek_reference.json);
//   - each item goes to the lightest pack with room, the lowest pack index on equal weight;
//   - replicate_experts gives each extra slot to the first expert with the largest
//     weight / replica_count (torch.max returns the first maximum);
//   - logical_to_physical lists an expert's slots by replica rank (creation order), not by slot.
// Group sums are exact when they stay below 2^24 tokens (float32); beyond that PyTorch's
// reduction order may round differently from our left-to-right sum.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "eplb/placement.h"

namespace epserve::eplb {

struct Packing {
  std::vector<int32_t> pack_index;    // [n] pack of each item
  std::vector<int32_t> rank_in_pack;  // [n] position of the item inside its pack
};

// Packs n items into num_packs packs of n / num_packs items each (n % num_packs must be 0).
Packing deepseek_balanced_packing(std::span<const float> weight, int num_packs);

struct Replication {
  std::vector<int32_t> physical_to_logical;  // [num_physical]; the first num_logical are 0..L-1
  std::vector<int32_t> replica_rank;         // [num_physical]
  std::vector<int32_t> logical_count;        // [num_logical]
};

// Gives num_physical - num_logical extra slots, one at a time, to the expert with the largest
// weight / replica_count.
Replication deepseek_replicate_experts(std::span<const float> weight, int num_physical);

// rebalance_experts_hierarchical for one layer. The global policy is this with num_groups = 1
// and num_nodes = 1.
LayerPlacement deepseek_rebalance_layer(std::span<const double> counts, int num_physical,
                                        int num_groups, int num_nodes, int num_gpus);

// All layers; hierarchical = false gives the global policy.
Placement deepseek_rebalance(const ExpertLoad& load, const PlacementConfig& config,
                             bool hierarchical);

}  // namespace epserve::eplb
