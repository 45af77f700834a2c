#include "eplb/planner_io.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "eplb/balancedness.h"

namespace epserve::eplb {
namespace {

using json = nlohmann::json;

std::string error_of(const std::string& text) {
  try {
    expert_load_from_json(parse_json_text(text, "in.json"), "in.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(EplbPlannerIo, ReadsLayersByExperts) {
  ExpertLoad load = expert_load_from_json(
      parse_json_text(R"({"logical_count": [[1, 2, 3], [4, 5.5, 0]], "rank": 0})", "x"), "x");
  EXPECT_EQ(load.num_layers, 2);
  EXPECT_EQ(load.num_logical, 3);
  EXPECT_EQ(load.counts, (std::vector<double>{1, 2, 3, 4, 5.5, 0}));
}

TEST(EplbPlannerIo, SumsARecorderDumpOverItsBuffer) {
  ExpertLoad load = expert_load_from_json(
      parse_json_text(
          R"({"logical_count": [[[1, 2], [3, 4]], [[10, 20], [30, 40]], [[0, 0], [0, 1]]]})", "x"),
      "x");
  EXPECT_EQ(load.num_layers, 2);
  EXPECT_EQ(load.num_logical, 2);
  EXPECT_EQ(load.counts, (std::vector<double>{11, 22, 33, 45}));
}

TEST(EplbPlannerIo, BadInputIsOneLineNamingTheProblem) {
  struct Case {
    const char* text;
    const char* expected;
  };
  for (Case c :
       {Case{R"({"logical_count": [[1, 2], [3]]})", "logical_count[1] must be an array of 2"},
        Case{R"({"logical_count": [[1, -2]]})", "counts must be >= 0"},
        Case{R"({"logical_count": [[1, "a"]]})", "must be a number"},
        Case{R"({"counts": [[1]]})", "with key \"logical_count\""},
        Case{R"({"logical_count": []})", "[layers][experts]"},
        Case{R"({"logical_count": [[[1, 2]], [[1, 2], [3, 4]]]})", "has 2 layers, expected 1"},
        Case{R"({"logical_count": [[1, 2])", "malformed JSON"}}) {
    std::string message = error_of(c.text);
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.text << " -> " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(message.rfind("in.json", 0), 0u) << message;
  }
}

TEST(EplbPlannerIo, OutputHasTheDocumentedKeysAndShapes) {
  ExpertLoad load{2, 3, {5, 1, 1, 1, 1, 6}};
  PlacementConfig config{4, 2, 1, 0};
  Placement placement = plan_placement(load, config, EplbAlgorithm::kDeepseek);
  auto per_layer = balancedness_per_layer(load, placement, 2);
  nlohmann::ordered_json out =
      placement_to_json(placement, config, EplbAlgorithm::kDeepseekGlobal, per_layer);
  EXPECT_EQ(out["algorithm"], "deepseek_global");
  ASSERT_EQ(out["physical_to_logical_map"].size(), 2u);
  EXPECT_EQ(out["physical_to_logical_map"][0].size(), 4u);
  ASSERT_EQ(out["logical_to_all_physical_map"][0].size(), 3u);
  EXPECT_EQ(out["logical_to_all_physical_map"][0][0].size(), 2u);  // expert 0 has two replicas
  EXPECT_EQ(out["logical_to_all_physical_map"][0][1][1], -1);
  EXPECT_EQ(out["logical_count"][0], json::parse("[2, 1, 1]"));
  EXPECT_EQ(out["logical_count"][1], json::parse("[1, 1, 2]"));
  EXPECT_DOUBLE_EQ(out["balancedness"].get<double>(), (per_layer[0] + per_layer[1]) / 2);
  EXPECT_EQ(out["balancedness_per_layer"].size(), 2u);
}

}  // namespace
}  // namespace epserve::eplb
