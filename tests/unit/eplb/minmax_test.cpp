#include "eplb/algorithms_minmax.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>

#include "eplb/balancedness.h"
#include "eplb/placement.h"

namespace epserve::eplb {
namespace {

struct RandomCase {
  ExpertLoad load;
  PlacementConfig config;
};

// A random layout (nodes, GPUs per node, slots per GPU, groups per node, group size) and 1-3
// layers of skewed counts: Zipf over a random permutation with an exponent in [0, 2.5], small
// integers with many ties, or mostly zeros.
RandomCase random_case(std::mt19937_64& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  RandomCase c;
  for (;;) {
    const int nodes = std::vector<int>{1, 1, 2, 4}[pick(0, 3)];
    const int gpus = nodes * std::vector<int>{1, 2, 4, 8}[pick(0, 3)];
    const int groups = nodes * pick(1, 3);
    const int experts = groups * pick(1, 8);
    const int physical = gpus * pick(1, 6);
    if (physical < experts) continue;
    c.config = PlacementConfig{physical, gpus, nodes, groups};
    c.load.num_layers = pick(1, 3);
    c.load.num_logical = experts;
    break;
  }
  const int kind = pick(0, 3);
  const double exponent = std::uniform_real_distribution<double>(0.0, 2.5)(rng);
  std::vector<int> perm(c.load.num_logical);
  c.load.counts.assign(static_cast<size_t>(c.load.num_layers) * c.load.num_logical, 0.0);
  for (int l = 0; l < c.load.num_layers; ++l) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int k = 0; k < c.load.num_logical; ++k) {
      double count = 0;
      if (kind <= 1) count = std::round(1e5 / std::pow(k + 1.0, exponent));
      if (kind == 2) count = pick(0, 5);
      if (kind == 3) count = pick(0, 9) == 0 ? pick(1, 1000) : 0;
      c.load.counts[static_cast<size_t>(l) * c.load.num_logical + perm[k]] = count;
    }
  }
  return c;
}

// Every slot holds a valid expert, every expert has a slot, the replica counts sum to the slots,
// and logical_to_physical lists exactly the slots of each expert.
void expect_valid(const Placement& p, const RandomCase& c) {
  ASSERT_EQ(p.num_layers, c.load.num_layers);
  ASSERT_EQ(p.num_logical, c.load.num_logical);
  ASSERT_EQ(p.num_physical, c.config.num_physical);
  ASSERT_EQ(p.num_physical % c.config.num_gpus, 0);
  for (int l = 0; l < p.num_layers; ++l) {
    auto counts = p.layer_logical_count(l);
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), p.num_physical);
    for (int e = 0; e < p.num_logical; ++e) {
      ASSERT_GE(counts[e], 1) << "layer " << l << " expert " << e;
      auto slots = p.replicas(l, e);
      ASSERT_EQ(static_cast<int>(slots.size()), counts[e]);
      for (int32_t slot : slots) EXPECT_EQ(p.layer_physical_to_logical(l)[slot], e);
    }
  }
}

// Every group's replicas sit on one node, and every node holds the same number of groups.
void expect_groups_whole_on_nodes(const Placement& p, const PlacementConfig& config) {
  const int group_size = p.num_logical / config.num_groups;
  const int slots_per_node = p.num_physical / config.num_nodes;
  for (int l = 0; l < p.num_layers; ++l) {
    std::vector<int> node_of_group(config.num_groups, -1);
    std::vector<std::set<int>> groups_of_node(config.num_nodes);
    auto p2l = p.layer_physical_to_logical(l);
    for (int slot = 0; slot < p.num_physical; ++slot) {
      int group = p2l[slot] / group_size, node = slot / slots_per_node;
      if (node_of_group[group] < 0) node_of_group[group] = node;
      ASSERT_EQ(node_of_group[group], node) << "layer " << l << " group " << group << " split";
      groups_of_node[node].insert(group);
    }
    for (const auto& groups : groups_of_node) {
      EXPECT_EQ(static_cast<int>(groups.size()), config.num_groups / config.num_nodes);
    }
  }
}

TEST(EplbMinmax, ValidAndNeverBelowDeepseekOnRandomSkewedInputs) {
  std::mt19937_64 rng(7);
  int strictly_better = 0;
  int layers = 0;
  const int kCases = 3000;
  for (int i = 0; i < kCases; ++i) {
    RandomCase c = random_case(rng);
    SCOPED_TRACE(testing::Message()
                 << "case " << i << ": " << c.load.num_logical << " experts, "
                 << c.config.num_physical << " slots, " << c.config.num_gpus << " GPUs, "
                 << c.config.num_nodes << " nodes, " << c.config.num_groups << " groups");
    for (bool hierarchical : {true, false}) {
      Placement ours = minmax_rebalance(c.load, c.config, hierarchical);
      Placement theirs = plan_placement(
          c.load, c.config,
          hierarchical ? EplbAlgorithm::kDeepseekHierarchical : EplbAlgorithm::kDeepseekGlobal);
      expect_valid(ours, c);
      if (hierarchical) expect_groups_whole_on_nodes(ours, c.config);
      auto ours_per_layer = balancedness_per_layer(c.load, ours, c.config.num_gpus);
      auto theirs_per_layer = balancedness_per_layer(c.load, theirs, c.config.num_gpus);
      for (int l = 0; l < c.load.num_layers; ++l) {
        ASSERT_GE(ours_per_layer[l], theirs_per_layer[l]) << "layer " << l;
        strictly_better += ours_per_layer[l] > theirs_per_layer[l] + 1e-9;
        ++layers;
      }
    }
    if (HasFatalFailure()) return;
  }
  std::printf("minmax strictly better than DeepSeek on %d of %d layer placements\n",
              strictly_better, layers);
  // Not a tautology: the fallback to DeepSeek's result only guarantees "not worse".
  EXPECT_GT(strictly_better, kCases / 4);
}

ExpertLoad zipf_load(int num_layers, int num_experts, double exponent, uint64_t seed) {
  std::mt19937_64 rng(seed);
  ExpertLoad load{num_layers, num_experts, {}};
  std::vector<int> perm(num_experts);
  for (int l = 0; l < num_layers; ++l) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<double> row(num_experts);
    for (int k = 0; k < num_experts; ++k)
      row[perm[k]] = std::round(1e6 / std::pow(k + 1.0, exponent));
    load.counts.insert(load.counts.end(), row.begin(), row.end());
  }
  return load;
}

// DeepSeek-V3's shape on skewed loads: minmax is clearly better, not only equal.
TEST(EplbMinmax, ImprovesOnDeepseekForDeepseekV3Shape) {
  ExpertLoad load = zipf_load(8, 256, 1.2, 3);
  PlacementConfig config{288, 32, 4, 8};
  for (bool hierarchical : {true, false}) {
    double ours = mean_balancedness(balancedness_per_layer(
        load, minmax_rebalance(load, config, hierarchical), config.num_gpus));
    double theirs = mean_balancedness(
        balancedness_per_layer(load,
                               plan_placement(load, config,
                                              hierarchical ? EplbAlgorithm::kDeepseekHierarchical
                                                           : EplbAlgorithm::kDeepseekGlobal),
                               config.num_gpus));
    EXPECT_GT(ours, theirs + 0.01) << (hierarchical ? "hierarchical" : "global");
  }
}

TEST(EplbMinmax, UniformLoadIsPerfectlyBalanced) {
  ExpertLoad load{1, 64, std::vector<double>(64, 100.0)};
  Placement p = minmax_rebalance(load, PlacementConfig{64, 8, 2, 8}, true);
  EXPECT_NEAR(layer_balancedness(load.layer(0), p.layer_physical_to_logical(0), 8), 1.0, 1e-12);
}

TEST(EplbMinmax, AutoPicksMinmaxAndItsMode) {
  PlacementConfig grouped{288, 32, 4, 8};
  PlacementConfig ungrouped{288, 32, 4, 0};
  PlacementConfig indivisible{288, 32, 4, 6};
  EXPECT_EQ(resolve_eplb_algorithm(EplbAlgorithm::kAuto, grouped),
            EplbAlgorithm::kMinmaxHierarchical);
  EXPECT_EQ(resolve_eplb_algorithm(EplbAlgorithm::kAuto, ungrouped), EplbAlgorithm::kMinmaxGlobal);
  EXPECT_EQ(resolve_eplb_algorithm(EplbAlgorithm::kAuto, indivisible),
            EplbAlgorithm::kMinmaxGlobal);
  EXPECT_EQ(resolve_eplb_algorithm(EplbAlgorithm::kDeepseek, grouped),
            EplbAlgorithm::kDeepseekHierarchical);
  EXPECT_EQ(resolve_eplb_algorithm(EplbAlgorithm::kDeepseek, indivisible),
            EplbAlgorithm::kDeepseekGlobal);
}

}  // namespace
}  // namespace epserve::eplb
