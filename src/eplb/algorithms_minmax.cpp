#include "eplb/algorithms_minmax.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "eplb/algorithms_deepseek.h"
#include "eplb/balancedness.h"
#include "eplb/minmax_node.h"

namespace epserve::eplb {
namespace {

using minmax::NodePlan;
using minmax::NodeProblem;

constexpr int kMaxGroupSwaps = 64;

NodeProblem node_problem(std::span<const double> counts, std::vector<int32_t> experts,
                         int num_slots, int num_gpus) {
  NodeProblem problem{std::move(experts), {}, num_slots, num_gpus};
  problem.weight.resize(problem.experts.size());
  for (size_t j = 0; j < problem.experts.size(); ++j) {
    problem.weight[j] = counts[problem.experts[j]];
  }
  return problem;
}

struct NodeResult {
  NodeProblem problem;
  NodePlan plan;
};

NodeResult solve_node(NodeProblem problem) {
  NodePlan plan = minmax::plan_node(problem);
  return {std::move(problem), std::move(plan)};
}

void write_node(const NodeResult& node, int first_slot, std::vector<int32_t>& physical_to_logical) {
  for (size_t i = 0; i < node.plan.slot_expert.size(); ++i) {
    physical_to_logical[first_slot + i] = node.problem.experts[node.plan.slot_expert[i]];
  }
}

std::vector<int32_t> minmax_global(std::span<const double> counts, const PlacementConfig& config) {
  std::vector<int32_t> experts(counts.size());
  std::iota(experts.begin(), experts.end(), 0);
  NodeResult node =
      solve_node(node_problem(counts, std::move(experts), config.num_physical, config.num_gpus));
  std::vector<int32_t> physical_to_logical(config.num_physical);
  write_node(node, 0, physical_to_logical);
  return physical_to_logical;
}

class HierarchicalPlanner {
 public:
  HierarchicalPlanner(std::span<const double> counts, const PlacementConfig& config)
      : counts_(counts),
        num_nodes_(config.num_nodes),
        group_size_(static_cast<int>(counts.size()) / config.num_groups),
        groups_per_node_(config.num_groups / config.num_nodes),
        slots_per_node_(config.num_physical / config.num_nodes),
        gpus_per_node_(config.num_gpus / config.num_nodes),
        group_load_(config.num_groups, 0.0) {
    for (size_t e = 0; e < counts.size(); ++e) group_load_[e / group_size_] += counts[e];
    eps_ = 1e-12 * std::max(1.0, std::accumulate(group_load_.begin(), group_load_.end(), 0.0));
  }

  std::vector<int32_t> plan() {
    pack_groups();
    for (int n = 0; n < num_nodes_; ++n) nodes_.push_back(solve_node(problem(node_groups_[n])));
    for (int round = 0; round < kMaxGroupSwaps && num_nodes_ > 1; ++round) {
      if (!swap_groups()) break;
    }
    std::vector<int32_t> physical_to_logical(static_cast<size_t>(slots_per_node_) * num_nodes_);
    for (int n = 0; n < num_nodes_; ++n)
      write_node(nodes_[n], n * slots_per_node_, physical_to_logical);
    return physical_to_logical;
  }

 private:
  NodeProblem problem(std::vector<int> groups) const {
    std::sort(groups.begin(), groups.end());
    std::vector<int32_t> experts;
    for (int g : groups) {
      for (int j = 0; j < group_size_; ++j) experts.push_back(g * group_size_ + j);
    }
    return node_problem(counts_, std::move(experts), slots_per_node_, gpus_per_node_);
  }

  // Groups onto nodes, heaviest first, each onto the lightest node with room.
  void pack_groups() {
    std::vector<int> order(group_load_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return group_load_[a] > group_load_[b]; });
    node_groups_.assign(num_nodes_, {});
    std::vector<double> node_load(num_nodes_, 0.0);
    for (int g : order) {
      int best = -1;
      for (int n = 0; n < num_nodes_; ++n) {
        if (static_cast<int>(node_groups_[n].size()) < groups_per_node_ &&
            (best < 0 || node_load[n] < node_load[best])) {
          best = n;
        }
      }
      node_groups_[best].push_back(g);
      node_load[best] += group_load_[g];
    }
  }

  // Swaps one group of the node holding the heaviest GPU with a lighter group of another node
  // when that lowers the larger of the two nodes' maxima. Candidates are tried in the order of
  // their lower bound and skipped once the bound cannot beat the current maximum.
  bool swap_groups() {
    std::vector<double> node_max(num_nodes_);
    for (int n = 0; n < num_nodes_; ++n) node_max[n] = nodes_[n].plan.max_load();
    const int w =
        static_cast<int>(std::max_element(node_max.begin(), node_max.end()) - node_max.begin());
    const double current = node_max[w] - eps_;
    struct Candidate {
      double bound;
      int v, ia, ib;
    };
    std::vector<Candidate> candidates;
    for (int ia = 0; ia < groups_per_node_; ++ia) {
      const int a = node_groups_[w][ia];
      for (int v = 0; v < num_nodes_; ++v) {
        if (v == w) continue;
        for (int ib = 0; ib < groups_per_node_; ++ib) {
          const int b = node_groups_[v][ib];
          if (group_load_[a] <= group_load_[b] + eps_) continue;
          auto [groups_w, groups_v] = swapped(w, ia, v, ib);
          double bound = std::max(minmax::node_lower_bound(problem(groups_w)),
                                  minmax::node_lower_bound(problem(groups_v)));
          if (bound < current) candidates.push_back({bound, v, ia, ib});
        }
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& x, const Candidate& y) { return x.bound < y.bound; });
    for (const Candidate& c : candidates) {
      auto [groups_w, groups_v] = swapped(w, c.ia, c.v, c.ib);
      NodeResult w_result = solve_node(problem(groups_w));
      if (w_result.plan.max_load() >= current) continue;
      NodeResult v_result = solve_node(problem(groups_v));
      if (v_result.plan.max_load() >= current) continue;
      std::swap(node_groups_[w][c.ia], node_groups_[c.v][c.ib]);
      nodes_[w] = std::move(w_result);
      nodes_[c.v] = std::move(v_result);
      return true;
    }
    return false;
  }

  std::pair<std::vector<int>, std::vector<int>> swapped(int w, int ia, int v, int ib) const {
    std::vector<int> groups_w = node_groups_[w], groups_v = node_groups_[v];
    std::swap(groups_w[ia], groups_v[ib]);
    return {groups_w, groups_v};
  }

  std::span<const double> counts_;
  int num_nodes_;
  int group_size_;
  int groups_per_node_;
  int slots_per_node_;
  int gpus_per_node_;
  std::vector<double> group_load_;
  double eps_ = 0.0;
  std::vector<std::vector<int>> node_groups_;
  std::vector<NodeResult> nodes_;
};

LayerPlacement with_replica_ranks(std::vector<int32_t> physical_to_logical, int num_logical) {
  LayerPlacement out;
  out.replica_rank.resize(physical_to_logical.size());
  std::vector<int32_t> seen(num_logical, 0);
  for (size_t p = 0; p < physical_to_logical.size(); ++p) {
    out.replica_rank[p] = seen[physical_to_logical[p]]++;
  }
  out.physical_to_logical = std::move(physical_to_logical);
  return out;
}

}  // namespace

LayerPlacement minmax_rebalance_layer(std::span<const double> counts, const PlacementConfig& config,
                                      bool hierarchical) {
  std::vector<int32_t> ours =
      hierarchical ? HierarchicalPlanner(counts, config).plan() : minmax_global(counts, config);
  LayerPlacement deepseek =
      deepseek_rebalance_layer(counts, config.num_physical, hierarchical ? config.num_groups : 1,
                               hierarchical ? config.num_nodes : 1, config.num_gpus);
  const double ours_balancedness = layer_balancedness(counts, ours, config.num_gpus);
  const double deepseek_balancedness =
      layer_balancedness(counts, deepseek.physical_to_logical, config.num_gpus);
  if (ours_balancedness > deepseek_balancedness) {
    return with_replica_ranks(std::move(ours), static_cast<int>(counts.size()));
  }
  return deepseek;
}

Placement minmax_rebalance(const ExpertLoad& load, const PlacementConfig& config,
                           bool hierarchical) {
  validate_placement_config(config, load.num_logical, hierarchical);
  std::vector<LayerPlacement> layers;
  layers.reserve(load.num_layers);
  for (int l = 0; l < load.num_layers; ++l) {
    layers.push_back(minmax_rebalance_layer(load.layer(l), config, hierarchical));
  }
  return assemble_placement(load.num_logical, layers);
}

}  // namespace epserve::eplb
