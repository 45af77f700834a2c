#include "eplb/placement.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "eplb/balancedness.h"

namespace epserve::eplb {
namespace {

TEST(EplbPlacement, AlgorithmNamesRoundTrip) {
  for (const char* name : {"auto", "deepseek", "deepseek_hierarchical", "deepseek_global", "minmax",
                           "minmax_hierarchical", "minmax_global"}) {
    EXPECT_EQ(eplb_algorithm_name(parse_eplb_algorithm(name)), name);
  }
  try {
    parse_eplb_algorithm("lpt");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deepseek_hierarchical"), std::string::npos) << e.what();
  }
}

TEST(EplbPlacement, ValidationNamesTheProblem) {
  auto message = [](PlacementConfig c, int num_logical, bool hierarchical) {
    try {
      validate_placement_config(c, num_logical, hierarchical);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message({16, 8, 2, 4}, 12, true), "");
  EXPECT_NE(message({17, 8, 2, 4}, 12, true).find("multiple of the number of GPUs"),
            std::string::npos);
  EXPECT_NE(message({8, 8, 2, 4}, 12, true).find("smaller than the number of logical experts"),
            std::string::npos);
  EXPECT_NE(message({16, 8, 2, 5}, 12, false).find("does not divide"), std::string::npos);
  EXPECT_NE(message({16, 8, 3, 4}, 12, false).find("not divisible by the number of nodes"),
            std::string::npos);
  EXPECT_NE(message({16, 8, 2, 0}, 12, true).find("needs the number of expert groups"),
            std::string::npos);
  EXPECT_NE(message({16, 8, 4, 2}, 12, true).find("multiple of the number of nodes"),
            std::string::npos);
  EXPECT_THROW(plan_placement(ExpertLoad{1, 12, std::vector<double>(12, 1.0)}, {16, 8, 2, 3},
                              EplbAlgorithm::kDeepseekHierarchical),
               Error);
}

TEST(EplbPlacement, TrivialPlacementWrapsAround) {
  Placement p = trivial_placement(2, 4, 6);
  EXPECT_EQ(p.physical_to_logical, (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(p.max_replicas, 2);
  EXPECT_EQ(std::vector<int32_t>(p.layer_logical_count(1).begin(), p.layer_logical_count(1).end()),
            (std::vector<int32_t>{2, 2, 1, 1}));
  auto replicas = p.replicas(0, 1);
  EXPECT_EQ(std::vector<int32_t>(replicas.begin(), replicas.end()), (std::vector<int32_t>{1, 5}));
}

TEST(EplbPlacement, AssembleRejectsMissingExpertsAndBadRanks) {
  LayerPlacement missing{{0, 0, 1, 1}, {0, 1, 0, 1}};
  EXPECT_THROW(assemble_placement(3, {missing}), Error);
  LayerPlacement duplicate_rank{{0, 0, 1, 2}, {0, 0, 0, 0}};
  EXPECT_THROW(assemble_placement(3, {duplicate_rank}), Error);
  LayerPlacement ok{{2, 0, 1, 0}, {0, 1, 0, 0}};
  Placement p = assemble_placement(3, {ok});
  auto replicas = p.replicas(0, 0);
  EXPECT_EQ(std::vector<int32_t>(replicas.begin(), replicas.end()), (std::vector<int32_t>{3, 1}));
}

TEST(EplbBalancedness, SplitsLoadOverReplicas) {
  // Two ranks of two slots: expert 0 (load 8) in slots 0, 1 (rank 0) and 2 (rank 1), expert 1
  // (load 2) in slot 3 (rank 1). Each replica of expert 0 takes 8/3.
  std::vector<double> load = {8, 2};
  std::vector<int32_t> p2l = {0, 0, 0, 1};
  auto loads = rank_loads(load, p2l, 2);
  EXPECT_NEAR(loads[0], 16.0 / 3, 1e-12);
  EXPECT_NEAR(loads[1], 14.0 / 3, 1e-12);
  EXPECT_NEAR(layer_balancedness(load, p2l, 2), (5.0 + 1e-5) / (16.0 / 3 + 1e-5), 1e-12);
  EXPECT_NEAR(balancedness_of_rank_loads(std::vector<double>{0, 0}), 1.0, 1e-12);
}

}  // namespace
}  // namespace epserve::eplb
