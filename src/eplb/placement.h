// EPLB placement: the types every placement algorithm shares and the entry point that picks one.
//
// A placement problem is the token count of every (layer, logical expert) plus the physical layout:
// num_physical expert slots split equally over num_gpus ranks (slot p lives on rank
// p / (num_physical / num_gpus)), ranks split equally over num_nodes nodes, and the logical experts
// split into num_groups equal groups (DeepSeek-V3's n_group). A placement says which logical
// expert every slot holds, per layer. Algorithms are pure functions (no threads, no I/O), so the
// offline planner (`epserve eplb plan`), `--init-expert-location` and the live rebalancer all share
// them.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace epserve::eplb {

// Token counts per (layer, logical expert), row-major [num_layers, num_logical].
struct ExpertLoad {
  int num_layers = 0;
  int num_logical = 0;
  std::vector<double> counts;

  std::span<const double> layer(int layer_id) const {
    return {counts.data() + static_cast<size_t>(layer_id) * num_logical,
            static_cast<size_t>(num_logical)};
  }
};

struct PlacementConfig {
  int num_physical = 0;  // expert slots over all ranks
  int num_gpus = 1;      // ranks; each holds num_physical / num_gpus slots
  int num_nodes = 1;     // ranks per node = num_gpus / num_nodes
  int num_groups = 0;    // expert groups (DeepSeek-V3 n_group); 0 = the model has none

  int slots_per_gpu() const { return num_physical / num_gpus; }
  // The hierarchical policies need whole groups on every node.
  bool allows_hierarchical() const { return num_groups > 0 && num_groups % num_nodes == 0; }
};

// Throws epserve::Error naming the flag to fix when the layout cannot hold num_logical experts.
void validate_placement_config(const PlacementConfig& config, int num_logical, bool hierarchical);

// One layer's result as an algorithm produces it. replica_rank[p] numbers the replicas of one
// logical expert 0, 1, ...; it fixes the order of logical_to_physical below.
struct LayerPlacement {
  std::vector<int32_t> physical_to_logical;  // [num_physical]
  std::vector<int32_t> replica_rank;         // [num_physical]
};

// All layers, in the shapes DeepSeek's rebalance_experts returns.
struct Placement {
  int num_layers = 0;
  int num_logical = 0;
  int num_physical = 0;
  int max_replicas = 0;                      // largest replica count over all layers and experts
  std::vector<int32_t> physical_to_logical;  // [num_layers, num_physical]
  std::vector<int32_t> logical_count;        // [num_layers, num_logical] replicas per expert
  std::vector<int32_t> logical_to_physical;  // [num_layers, num_logical, max_replicas], -1 padded

  std::span<const int32_t> layer_physical_to_logical(int layer_id) const {
    return {physical_to_logical.data() + static_cast<size_t>(layer_id) * num_physical,
            static_cast<size_t>(num_physical)};
  }
  std::span<const int32_t> layer_logical_count(int layer_id) const {
    return {logical_count.data() + static_cast<size_t>(layer_id) * num_logical,
            static_cast<size_t>(num_logical)};
  }
  // The slots of one logical expert, in replica-rank order (no padding).
  std::span<const int32_t> replicas(int layer_id, int logical_id) const {
    size_t row = static_cast<size_t>(layer_id) * num_logical + logical_id;
    return {logical_to_physical.data() + row * max_replicas,
            static_cast<size_t>(logical_count[row])};
  }
};

// Builds the full result from per-layer results; checks that every slot holds a valid expert,
// every expert has a replica and the replica ranks of each expert are 0..count-1.
Placement assemble_placement(int num_logical, const std::vector<LayerPlacement>& layers);

// The trivial placement SGLang starts from: slot p holds logical expert p % num_logical.
Placement trivial_placement(int num_layers, int num_logical, int num_physical);

// --eplb-algorithm values. SGLang's names are kept; minmax is epserve's own algorithm.
//   deepseek               DeepSeek's rebalance_experts as published: hierarchical when
//                          num_groups % num_nodes == 0, else global
//   deepseek_hierarchical  DeepSeek's hierarchical policy (groups packed onto nodes)
//   deepseek_global        DeepSeek's global policy (hierarchical with 1 group and 1 node)
//   minmax[_hierarchical|_global]  epserve's: same constraints, lower maximum rank load
//   auto                   minmax, hierarchical when num_groups % num_nodes == 0, else global
enum class EplbAlgorithm {
  kAuto,
  kDeepseek,
  kDeepseekHierarchical,
  kDeepseekGlobal,
  kMinmax,
  kMinmaxHierarchical,
  kMinmaxGlobal,
};

// Throws epserve::Error listing the accepted names.
EplbAlgorithm parse_eplb_algorithm(std::string_view name);
std::string_view eplb_algorithm_name(EplbAlgorithm algorithm);
// Replaces auto, deepseek and minmax by their hierarchical or global form for this layout.
EplbAlgorithm resolve_eplb_algorithm(EplbAlgorithm algorithm, const PlacementConfig& config);

// Runs the (resolved) algorithm on every layer.
Placement plan_placement(const ExpertLoad& load, const PlacementConfig& config,
                         EplbAlgorithm algorithm);

}  // namespace epserve::eplb
