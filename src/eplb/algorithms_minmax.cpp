#include "eplb/algorithms_minmax.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <utility>

#include "core/error.h"
#include "eplb/algorithms_deepseek.h"
#include "eplb/balancedness.h"

namespace epserve::eplb {
namespace {

// Bounds on the local searches; every step strictly lowers a maximum, these only cap run time.
constexpr int kMaxSwapRounds = 4096;
constexpr int kMaxReplicaMoves = 256;
constexpr int kMaxGroupSwaps = 64;
constexpr size_t kRecipientsTried = 3;
constexpr size_t kDonorsTried = 4;
// The search stops once the heaviest GPU is within this fraction of the node's lower bound.
constexpr double kCloseEnough = 1e-5;

// The experts one node holds and their loads; local expert j is global expert experts[j].
struct NodeProblem {
  std::vector<int32_t> experts;
  std::vector<double> weight;
  int num_slots = 0;
  int num_gpus = 0;
};

// One node's plan. Slot i lives on the node's GPU i / slots_per_gpu.
struct NodePlan {
  std::vector<int32_t> count;        // replicas per local expert
  std::vector<int32_t> slot_expert;  // [num_slots] local expert of each slot
  std::vector<double> slot_load;     // [num_slots] weight / count of the slot's expert
  std::vector<double> gpu_load;      // [num_gpus]

  int heaviest_gpu() const {
    return static_cast<int>(std::max_element(gpu_load.begin(), gpu_load.end()) - gpu_load.begin());
  }
  double max_load() const { return *std::max_element(gpu_load.begin(), gpu_load.end()); }
};

class NodePlanner {
 public:
  explicit NodePlanner(const NodeProblem& problem)
      : weight_(problem.weight),
        num_slots_(problem.num_slots),
        num_gpus_(problem.num_gpus),
        slots_per_gpu_(problem.num_slots / problem.num_gpus),
        counts_(greedy_counts()) {
    const double total = std::accumulate(weight_.begin(), weight_.end(), 0.0);
    eps_ = 1e-12 * std::max(total, 1.0);
    // No plan beats the mean GPU load, nor the smallest possible largest replica load (which
    // the greedy counts achieve).
    lower_bound_ = total / num_gpus_;
    for (size_t e = 0; e < counts_.size(); ++e) {
      lower_bound_ = std::max(lower_bound_, weight_[e] / counts_[e]);
    }
    good_enough_ = lower_bound_ * (1.0 + kCloseEnough) + eps_;
  }

  double lower_bound() const { return lower_bound_; }

  NodePlan plan() const {
    NodePlan plan = pack(counts_);
    refine_swaps(plan);
    for (int move = 0; move < kMaxReplicaMoves && plan.max_load() > good_enough_; ++move) {
      if (!try_replica_move(plan)) break;
    }
    return plan;
  }

 private:
  // Exact greedy for the smallest largest weight / count: each extra slot goes to the expert
  // with the largest load per replica (the lowest id on ties).
  std::vector<int32_t> greedy_counts() const {
    const int n = static_cast<int>(weight_.size());
    std::vector<int32_t> count(n, 1);
    auto lighter = [](const std::pair<double, int>& a, const std::pair<double, int>& b) {
      return a.first < b.first || (a.first == b.first && a.second > b.second);
    };
    std::priority_queue<std::pair<double, int>, std::vector<std::pair<double, int>>,
                        decltype(lighter)>
        heap(lighter);
    for (int e = 0; e < n; ++e) heap.push({weight_[e], e});
    for (int extra = n; extra < num_slots_; ++extra) {
      int e = heap.top().second;
      heap.pop();
      ++count[e];
      heap.push({weight_[e] / count[e], e});
    }
    return count;
  }

  // Longest processing time first with equal slot counts: replicas by load, heaviest first, each
  // onto the lightest GPU with a free slot.
  NodePlan pack(std::vector<int32_t> count) const {
    std::vector<std::pair<double, int>> items;
    items.reserve(num_slots_);
    for (size_t e = 0; e < count.size(); ++e) {
      for (int r = 0; r < count[e]; ++r) items.push_back({weight_[e] / count[e], int(e)});
    }
    std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    NodePlan plan;
    plan.count = std::move(count);
    plan.slot_expert.assign(num_slots_, -1);
    plan.slot_load.assign(num_slots_, 0.0);
    plan.gpu_load.assign(num_gpus_, 0.0);
    std::vector<int> filled(num_gpus_, 0);
    for (const auto& [load, expert] : items) {
      int best = -1;
      for (int g = 0; g < num_gpus_; ++g) {
        if (filled[g] < slots_per_gpu_ && (best < 0 || plan.gpu_load[g] < plan.gpu_load[best])) {
          best = g;
        }
      }
      int slot = best * slots_per_gpu_ + filled[best]++;
      plan.slot_expert[slot] = expert;
      plan.slot_load[slot] = load;
      plan.gpu_load[best] += load;
    }
    for (int g = 0; g < num_gpus_; ++g) sort_gpu(plan, g);
    return plan;
  }

  // Keeps the slots of one GPU in ascending load order; the order of slots inside a GPU does not
  // matter to the placement and lets refine_swaps find the best pair in linear time.
  void sort_gpu(NodePlan& plan, int gpu) const {
    const int begin = gpu * slots_per_gpu_, end = begin + slots_per_gpu_;
    for (int i = begin + 1; i < end; ++i) {
      for (int j = i; j > begin && plan.slot_load[j] < plan.slot_load[j - 1]; --j) {
        std::swap(plan.slot_load[j], plan.slot_load[j - 1]);
        std::swap(plan.slot_expert[j], plan.slot_expert[j - 1]);
      }
    }
  }

  double sum_gpu(const NodePlan& plan, int gpu) const {
    double sum = 0.0;
    for (int i = gpu * slots_per_gpu_; i < (gpu + 1) * slots_per_gpu_; ++i)
      sum += plan.slot_load[i];
    return sum;
  }

  void refresh_loads(NodePlan& plan) const {
    for (int i = 0; i < num_slots_; ++i) {
      plan.slot_load[i] = weight_[plan.slot_expert[i]] / plan.count[plan.slot_expert[i]];
    }
    for (int g = 0; g < num_gpus_; ++g) {
      sort_gpu(plan, g);
      plan.gpu_load[g] = sum_gpu(plan, g);
    }
  }

  // Pairwise swaps between the heaviest GPU and another, until none lowers the larger load of
  // the pair.
  void refine_swaps(NodePlan& plan) const {
    const int s = slots_per_gpu_;
    std::vector<int> order(num_gpus_);
    for (int round = 0; round < kMaxSwapRounds; ++round) {
      const int h = plan.heaviest_gpu();
      const double heavy = plan.gpu_load[h];
      if (heavy <= good_enough_) return;
      double best_max = heavy - eps_;
      int best_a = -1;
      int best_b = -1;
      // Lightest GPUs first; the best swap with the first GPU that offers an improving one is
      // taken (a swap with GPU o cannot bring the pair below (heavy + load_o) / 2, and lighter
      // GPUs leave the most room).
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int a, int b) {
        return plan.gpu_load[a] < plan.gpu_load[b] ||
               (plan.gpu_load[a] == plan.gpu_load[b] && a < b);
      });
      for (int other : order) {
        const double light = plan.gpu_load[other];
        if (other == h) continue;
        if (best_a >= 0 || 0.5 * (heavy + light) >= best_max) break;
        // Swapping a (on h) with b (on other) moves delta = x_a - x_b and leaves the pair at
        // max(heavy - delta, light + delta) = light + t + |delta - t| with t = (heavy - light) / 2:
        // the best pair is the one with x_a closest to x_b + t, found by one merge-like pass
        // over both GPUs' ascending slot loads.
        const double t = 0.5 * (heavy - light);
        int a = h * s;
        const int a_end = a + s;
        for (int b = other * s; b < (other + 1) * s; ++b) {
          const double target = plan.slot_load[b] + t;
          while (a + 1 < a_end && plan.slot_load[a + 1] <= target) ++a;
          for (int ai = a; ai <= std::min(a + 1, a_end - 1); ++ai) {
            const double delta = plan.slot_load[ai] - plan.slot_load[b];
            if (delta <= eps_) continue;
            const double new_max = light + t + std::abs(delta - t);
            if (new_max < best_max) {
              best_max = new_max;
              best_a = ai;
              best_b = b;
            }
          }
        }
      }
      if (best_a < 0) return;
      std::swap(plan.slot_expert[best_a], plan.slot_expert[best_b]);
      std::swap(plan.slot_load[best_a], plan.slot_load[best_b]);
      sort_gpu(plan, h);
      sort_gpu(plan, best_b / s);
      plan.gpu_load[h] = sum_gpu(plan, h);
      plan.gpu_load[best_b / s] = sum_gpu(plan, best_b / s);
    }
  }

  // Moves one replica from a donor (an expert with spare replicas whose load per replica stays
  // low without one) to an expert on the heaviest GPU. The donor's slot is handed over on the
  // lightest GPU holding the donor, or on the heaviest GPU; the move is kept when, after swaps,
  // the maximum is lower.
  bool try_replica_move(NodePlan& plan) const {
    const double current = plan.max_load();
    const int h = plan.heaviest_gpu();
    const int s = slots_per_gpu_;

    std::vector<int> recipients;
    for (int i = h * s; i < (h + 1) * s; ++i) {
      int e = plan.slot_expert[i];
      if (weight_[e] > 0 &&
          std::find(recipients.begin(), recipients.end(), e) == recipients.end()) {
        recipients.push_back(e);
      }
    }
    std::sort(recipients.begin(), recipients.end(), [&](int a, int b) {
      double la = weight_[a] / plan.count[a], lb = weight_[b] / plan.count[b];
      return la > lb || (la == lb && a < b);
    });
    if (recipients.size() > kRecipientsTried) recipients.resize(kRecipientsTried);

    std::vector<std::pair<double, int>> donors;
    for (size_t d = 0; d < plan.count.size(); ++d) {
      if (plan.count[d] >= 2) donors.push_back({weight_[d] / (plan.count[d] - 1), int(d)});
    }
    std::sort(donors.begin(), donors.end());
    if (donors.size() > kDonorsTried) donors.resize(kDonorsTried);

    for (int e : recipients) {
      for (const auto& [load_after, d] : donors) {
        if (d == e || load_after >= current - eps_) continue;
        int lightest_slot = -1;
        int heaviest_slot = -1;
        for (int i = 0; i < num_slots_; ++i) {
          if (plan.slot_expert[i] != d) continue;
          if (lightest_slot < 0 || plan.gpu_load[i / s] < plan.gpu_load[lightest_slot / s]) {
            lightest_slot = i;
          }
          if (i / s == h && heaviest_slot < 0) heaviest_slot = i;
        }
        const int candidates[2] = {lightest_slot, heaviest_slot};
        const int num_candidates = heaviest_slot >= 0 && heaviest_slot != lightest_slot ? 2 : 1;
        for (int c = 0; c < num_candidates; ++c) {
          NodePlan trial = plan;
          trial.slot_expert[candidates[c]] = e;
          --trial.count[d];
          ++trial.count[e];
          refresh_loads(trial);
          refine_swaps(trial);
          if (trial.max_load() < current - eps_) {
            plan = std::move(trial);
            return true;
          }
        }
      }
    }
    return false;
  }

  std::span<const double> weight_;
  int num_slots_;
  int num_gpus_;
  int slots_per_gpu_;
  std::vector<int32_t> counts_;
  double eps_ = 0.0;
  double lower_bound_ = 0.0;
  double good_enough_ = 0.0;
};

NodeProblem node_problem(std::span<const double> counts, std::vector<int32_t> experts,
                         int num_slots, int num_gpus) {
  NodeProblem problem{std::move(experts), {}, num_slots, num_gpus};
  problem.weight.resize(problem.experts.size());
  for (size_t j = 0; j < problem.experts.size(); ++j)
    problem.weight[j] = counts[problem.experts[j]];
  return problem;
}

struct NodeResult {
  NodeProblem problem;
  NodePlan plan;
};

NodeResult solve_node(NodeProblem problem) {
  NodePlan plan = NodePlanner(problem).plan();
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
          double bound = std::max(NodePlanner(problem(groups_w)).lower_bound(),
                                  NodePlanner(problem(groups_v)).lower_bound());
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
