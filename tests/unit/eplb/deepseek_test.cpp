#include "eplb/algorithms_deepseek.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "eplb/placement.h"

namespace epserve::eplb {
namespace {

// The example in deepseek-ai/EPLB's README: 2 layers x 12 experts, 16 slots, 4 groups, 2 nodes,
// 8 GPUs, and the physical_to_logical map it publishes.
ExpertLoad readme_load() {
  return ExpertLoad{2, 12, {90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,  //
                            20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27}};
}

TEST(EplbDeepseek, ReadmeExampleGivesThePublishedMap) {
  Placement placement =
      plan_placement(readme_load(), PlacementConfig{16, 8, 2, 4}, EplbAlgorithm::kDeepseek);
  std::vector<int32_t> expected = {5, 6,  5, 7, 8, 4,  3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
                                   7, 10, 6, 8, 6, 11, 8, 9, 2,  4, 5,  1, 5, 0, 3,  1};
  EXPECT_EQ(placement.physical_to_logical, expected);
}

// Cases that PyTorch ran through deepseek-ai/EPLB's rebalance_experts
// (tools/reference/eplb_deepseek_fixtures.py), many with equal weights so that every tie-break
// of the three steps is exercised.
TEST(EplbDeepseek, MatchesTheReferenceImplementationExactly) {
  std::ifstream file(EPSERVE_SOURCE_DIR "/tests/data/eplb/deepseek_reference.json");
  ASSERT_TRUE(file) << "missing tests/data/eplb/deepseek_reference.json";
  nlohmann::json data = nlohmann::json::parse(file);
  ASSERT_GE(data["cases"].size(), 10u);
  for (const auto& c : data["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ExpertLoad load;
    load.num_layers = static_cast<int>(c["weight"].size());
    load.num_logical = static_cast<int>(c["weight"][0].size());
    for (const auto& row : c["weight"]) {
      for (const auto& v : row) load.counts.push_back(v.get<double>());
    }
    PlacementConfig config{c["num_physical"].get<int>(), c["num_gpus"].get<int>(),
                           c["num_nodes"].get<int>(), c["num_groups"].get<int>()};
    Placement placement = plan_placement(load, config, EplbAlgorithm::kDeepseek);

    std::vector<int32_t> physical_to_logical, logical_count, logical_to_physical;
    for (const auto& row : c["physical_to_logical_map"]) {
      for (const auto& v : row) physical_to_logical.push_back(v.get<int32_t>());
    }
    for (const auto& row : c["logical_count"]) {
      for (const auto& v : row) logical_count.push_back(v.get<int32_t>());
    }
    for (const auto& layer : c["logical_to_physical_map"]) {
      for (const auto& row : layer) {
        for (const auto& v : row) logical_to_physical.push_back(v.get<int32_t>());
      }
    }
    EXPECT_EQ(placement.physical_to_logical, physical_to_logical);
    EXPECT_EQ(placement.logical_count, logical_count);
    EXPECT_EQ(placement.max_replicas, static_cast<int>(c["logical_to_physical_map"][0][0].size()));
    EXPECT_EQ(placement.logical_to_physical, logical_to_physical);
  }
}

}  // namespace
}  // namespace epserve::eplb
