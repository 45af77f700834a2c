// Where every logical expert lives: the expert location map the EP runtime routes with.
//
// For each MoE layer, physical_to_logical[p] is the logical expert in slot p (slot p lives on rank
// p / num_local_physical), and logical_to_all_physical lists the slots holding each logical expert
// (its replicas), padded with -1 to max_replicas. It is built like SGLang's
// ExpertLocationMetadata:
//   - trivial: slot p holds logical expert p % num_logical;
//   - from a physical_to_logical map (SGLang's init_by_mapping): replicas listed by ascending
//     slot;
//   - with a given replica order (a planner result, SGLang's init_by_eplb, or a JSON map):
//     eplb/expert_location_io.h builds those and reads --init-expert-location.
//
// Routing a top-k id from logical to physical (the runtime's choice among replicas):
//   - static (SGLang: a per-rank table computed once; a rank uses its own replica of the expert
//     if it has one, otherwise the ranks without one are shared evenly among the replicas,
//     SGLang with a seeded random shuffle, we deterministically round-robin);
//   - dynamic (SGLang: a uniformly random replica per top-k entry; we draw from a counter-based
//     hash of a caller-given seed and the entry's position, so it is a pure function).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace epserve::ep {

class ExpertLocation {
 public:
  static ExpertLocation trivial(int num_layers, int num_logical, int num_physical, int ep_size);
  // physical_to_logical is [num_layers, num_physical] row-major. ordered_replicas, when given, is
  // the replica order of every logical expert, [num_layers, num_logical, width] padded with -1
  // (it must list exactly the slots physical_to_logical gives each expert); when empty,
  // replicas are listed by ascending slot.
  static ExpertLocation from_physical_to_logical(int num_logical, int ep_size, int num_physical,
                                                 std::vector<int32_t> physical_to_logical,
                                                 std::vector<int32_t> ordered_replicas = {},
                                                 int width = 0);

  int num_layers() const { return num_layers_; }
  int num_logical() const { return num_logical_; }
  int num_physical() const { return num_physical_; }
  int ep_size() const { return ep_size_; }
  int num_local_physical() const { return num_physical_ / ep_size_; }
  int max_replicas() const { return max_replicas_; }
  int rank_of_physical(int physical_id) const { return physical_id / num_local_physical(); }

  // Every layer's row, [num_layers, num_physical] row-major.
  std::span<const int32_t> all_physical_to_logical() const { return physical_to_logical_; }
  int32_t physical_to_logical(int layer, int physical_id) const {
    return physical_to_logical_[static_cast<size_t>(layer) * num_physical_ + physical_id];
  }
  std::span<const int32_t> layer_physical_to_logical(int layer) const {
    return {physical_to_logical_.data() + static_cast<size_t>(layer) * num_physical_,
            static_cast<size_t>(num_physical_)};
  }
  int replica_count(int layer, int logical_id) const {
    return replica_count_[static_cast<size_t>(layer) * num_logical_ + logical_id];
  }
  // The slots of one logical expert (no padding).
  std::span<const int32_t> logical_to_all_physical(int layer, int logical_id) const {
    size_t row = static_cast<size_t>(layer) * num_logical_ + logical_id;
    return {logical_to_all_physical_.data() + row * max_replicas_,
            static_cast<size_t>(replica_count_[row])};
  }

  bool operator==(const ExpertLocation&) const = default;

  // This map with the given layers taken from `update` (same sizes); the rest stay as they are.
  // Live EPLB switches the placement a chunk of layers at a time with it.
  ExpertLocation with_layers(const ExpertLocation& update, std::span<const int> layers) const;
  // Whether layer `layer` places the experts alike in both maps (the same expert in every slot).
  bool same_layer(const ExpertLocation& other, int layer) const;

 private:
  ExpertLocation() = default;
  // Checks the sizes and ids and fills logical_to_all_physical_ from the given replica order
  // (a [num_layers, num_logical, width] table padded with -1), or by ascending slot when empty.
  void build(std::vector<int32_t> ordered_replicas, int width);

  int num_layers_ = 0;
  int num_logical_ = 0;
  int num_physical_ = 0;
  int ep_size_ = 1;
  int max_replicas_ = 0;
  std::vector<int32_t> physical_to_logical_;      // [L, P]
  std::vector<int32_t> replica_count_;            // [L, E]
  std::vector<int32_t> logical_to_all_physical_;  // [L, E, max_replicas], -1 padded
};

// Static dispatch: the physical slot this rank sends each (layer, logical expert) to,
// [num_layers, num_logical] row-major. Its own replica when it has one (the first in
// logical_to_all_physical order); the ranks without one are dealt round-robin over the replicas
// (starting at replica (layer * num_logical + logical) % replicas), so every replica serves
// floor or ceil of (ranks without a replica) / replicas of them.
std::vector<int32_t> static_dispatch_table(const ExpertLocation& location, int ep_rank);
// One layer's row of that table, [num_logical].
std::vector<int32_t> static_dispatch_row(const ExpertLocation& location, int layer, int ep_rank);

// Maps top-k logical ids of one layer to physical ids with a row of static_dispatch_table.
void logical_to_physical_static(std::span<const int32_t> layer_dispatch_row,
                                std::span<const int32_t> topk_logical,
                                std::span<int32_t> topk_physical);

// Dynamic dispatch: each entry i goes to replica hash(seed, i) % replica_count.
void logical_to_physical_dynamic(const ExpertLocation& location, int layer, uint64_t seed,
                                 std::span<const int32_t> topk_logical,
                                 std::span<int32_t> topk_physical);

}  // namespace epserve::ep
