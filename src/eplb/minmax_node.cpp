#include "eplb/minmax_node.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>
#include <span>
#include <utility>

namespace epserve::eplb::minmax {
namespace {

// Bounds on the local searches; every step strictly lowers a maximum, these only cap run time.
constexpr int kMaxSwapRounds = 4096;
constexpr int kMaxReplicaMoves = 256;
constexpr size_t kRecipientsTried = 2;
constexpr size_t kDonorsTried = 4;
// The search stops once the heaviest GPU is within this fraction of the node's lower bound.
constexpr double kCloseEnough = 1e-5;

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

}  // namespace

NodePlan plan_node(const NodeProblem& problem) {
  return NodePlanner(problem).plan();
}

double node_lower_bound(const NodeProblem& problem) {
  return NodePlanner(problem).lower_bound();
}

}  // namespace epserve::eplb::minmax
