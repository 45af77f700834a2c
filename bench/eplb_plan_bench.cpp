// EPLB planner benchmark: time to plan DeepSeek-V3's shape (61 layers x 256 experts onto 288
// slots over 32 ranks, 4 nodes, 8 expert groups) with DeepSeek's policy and with epserve's
// minmax, and the balancedness of both on skewed synthetic loads: per layer, expert k of a random
// permutation gets a share proportional to 1 / k^s (Zipf with exponent s), scaled to 10^6 tokens
// and rounded. Prints per exponent: plan times (best of several runs) against the 100 ms goal,
// and the mean balancedness of trivial, DeepSeek and minmax placements with the ratio.
//
// Usage: eplb_plan_bench [--layers 61] [--experts 256] [--slots 288] [--gpus 32] [--nodes 4]
//                        [--groups 8] [--repeats 5] [--seed 1]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "eplb/balancedness.h"
#include "eplb/placement.h"

namespace {

using epserve::eplb::EplbAlgorithm;
using epserve::eplb::ExpertLoad;
using epserve::eplb::Placement;
using epserve::eplb::PlacementConfig;

ExpertLoad zipf_load(int num_layers, int num_experts, double exponent, std::mt19937_64& rng) {
  ExpertLoad load{num_layers, num_experts, {}};
  load.counts.resize(static_cast<size_t>(num_layers) * num_experts);
  std::vector<double> share(num_experts);
  for (int k = 0; k < num_experts; ++k) share[k] = 1.0 / std::pow(k + 1.0, exponent);
  const double total = std::accumulate(share.begin(), share.end(), 0.0);
  std::vector<int> perm(num_experts);
  for (int l = 0; l < num_layers; ++l) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int k = 0; k < num_experts; ++k) {
      load.counts[static_cast<size_t>(l) * num_experts + perm[k]] =
          std::round(1e6 * share[k] / total);
    }
  }
  return load;
}

// CPU time of this thread: the machines we measure on are shared, so wall time would count
// other processes' work.
double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

struct Timed {
  Placement placement;
  double best_ms = 1e300;
};

Timed time_plan(const ExpertLoad& load, const PlacementConfig& config, EplbAlgorithm algorithm,
                int repeats) {
  Timed timed;
  for (int r = 0; r < repeats; ++r) {
    double start = thread_cpu_ms();
    timed.placement = epserve::eplb::plan_placement(load, config, algorithm);
    timed.best_ms = std::min(timed.best_ms, thread_cpu_ms() - start);
  }
  return timed;
}

double mean_balancedness(const ExpertLoad& load, const Placement& placement, int num_gpus) {
  return epserve::eplb::mean_balancedness(
      epserve::eplb::balancedness_per_layer(load, placement, num_gpus));
}

// An upper bound on any placement's balancedness for one layer: the heaviest rank carries at
// least the mean, the largest load per replica (replicas given greedily, which minimises it; in
// hierarchical mode an expert can have at most slots_per_node - experts_per_node + 1 replicas),
// and in hierarchical mode the heaviest group plus the lightest groups that must share its node,
// over the node's ranks.
double balancedness_bound(std::span<const double> w, const PlacementConfig& c, bool hierarchical) {
  const int E = static_cast<int>(w.size());
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  const double mean = total / c.num_gpus;
  double bound = mean;
  std::vector<int> count(E, 1);
  for (int extra = E; extra < c.num_physical; ++extra) {
    int best = 0;
    for (int e = 1; e < E; ++e) {
      if (w[e] / count[e] > w[best] / count[best]) best = e;
    }
    ++count[best];
  }
  for (int e = 0; e < E; ++e) bound = std::max(bound, w[e] / count[e]);
  if (hierarchical) {
    const int gpus_per_node = c.num_gpus / c.num_nodes,
              groups_per_node = c.num_groups / c.num_nodes;
    const int spare = (c.num_physical - E) / c.num_nodes;
    std::vector<double> group(c.num_groups, 0.0);
    for (int e = 0; e < E; ++e) {
      group[e / (E / c.num_groups)] += w[e];
      bound = std::max(bound, w[e] / (spare + 1));
    }
    for (int g = 0; g < c.num_groups; ++g) {
      std::vector<double> others;
      for (int h = 0; h < c.num_groups; ++h) {
        if (h != g) others.push_back(group[h]);
      }
      std::sort(others.begin(), others.end());
      double node = group[g];
      for (int k = 0; k < groups_per_node - 1; ++k) node += others[k];
      bound = std::max(bound, node / gpus_per_node);
    }
  }
  return (mean + 1e-5) / (bound + 1e-5);
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 61, experts = 256, slots = 288, gpus = 32, nodes = 4, groups = 8, repeats = 5;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    long value = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--layers")
      layers = value;
    else if (flag == "--experts")
      experts = value;
    else if (flag == "--slots")
      slots = value;
    else if (flag == "--gpus")
      gpus = value;
    else if (flag == "--nodes")
      nodes = value;
    else if (flag == "--groups")
      groups = value;
    else if (flag == "--repeats")
      repeats = value;
    else if (flag == "--seed")
      seed = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  const PlacementConfig config{slots, gpus, nodes, groups};
  const double kGoalMs = 100.0;
  std::printf(
      "EPLB plan: %d layers x %d experts -> %d slots, %d ranks, %d nodes, %d groups; "
      "best of %d runs; goal %.0f ms per plan\n",
      layers, experts, slots, gpus, nodes, groups, repeats, kGoalMs);
  std::printf("%-6s %-12s | %10s %10s %8s | %8s %8s %8s %8s %8s\n", "zipf", "mode", "deepseek",
              "minmax", "minmax/", "trivial", "deepseek", "minmax", "minmax/", "upper");
  std::printf("%-6s %-12s | %10s %10s %8s | %8s %8s %8s %8s %8s\n", "s", "", "ms", "ms", "goal",
              "balance", "balance", "balance", "deepseek", "bound");
  std::mt19937_64 rng(seed);
  for (double exponent : {0.5, 0.8, 1.0, 1.2, 1.5, 2.0}) {
    ExpertLoad load = zipf_load(layers, experts, exponent, rng);
    Placement trivial = epserve::eplb::trivial_placement(layers, experts, slots);
    double trivial_balance = mean_balancedness(load, trivial, gpus);
    struct Mode {
      const char* name;
      EplbAlgorithm deepseek, minmax;
    };
    for (Mode mode :
         {Mode{"hierarchical", EplbAlgorithm::kDeepseekHierarchical,
               EplbAlgorithm::kMinmaxHierarchical},
          Mode{"global", EplbAlgorithm::kDeepseekGlobal, EplbAlgorithm::kMinmaxGlobal}}) {
      const bool hierarchical = mode.deepseek == EplbAlgorithm::kDeepseekHierarchical;
      if (hierarchical && !config.allows_hierarchical()) continue;
      Timed deepseek = time_plan(load, config, mode.deepseek, repeats);
      Timed minmax = time_plan(load, config, mode.minmax, repeats);
      double bound = 0;
      for (int l = 0; l < layers; ++l)
        bound += balancedness_bound(load.layer(l), config, hierarchical);
      bound /= layers;
      double deepseek_balance = mean_balancedness(load, deepseek.placement, gpus);
      double minmax_balance = mean_balancedness(load, minmax.placement, gpus);
      std::printf("%-6.1f %-12s | %10.2f %10.2f %8.2f | %8.4f %8.4f %8.4f %8.4f %8.4f\n", exponent,
                  mode.name, deepseek.best_ms, minmax.best_ms, minmax.best_ms / kGoalMs,
                  trivial_balance, deepseek_balance, minmax_balance,
                  minmax_balance / deepseek_balance, bound);
    }
  }
  return 0;
}
