// Live EPLB never changes an output: `epserve generate` runs the golden prompts greedily with
// the experts rebalanced every 2 forward passes (one layer per pass, with redundant experts),
// and must give the tokens of a run without EPLB, in several layouts. Expert weights really
// move (the run reports layers moved). A rebalance chunk that fails on one rank leaves the old
// placement everywhere, and the next rebalance still happens.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/golden_prompts.h"
#include "support/matmul_order.h"
#include "support/run_epserve.h"
#include "support/run_generate.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

using testing::run_generate;

using testing::golden_prompts;

// Same tokens; logits equal up to the order of the ranks' partial sums (--moe-a2a-backend none
// adds each rank's experts' outputs, and which experts a rank holds changes). With the BF16
// order of matmul, a one-ulp difference can move a matmul input across a bf16 rounding boundary:
// 0.2, as in model_invariance_test.cpp (measured: 0.06; kimi_k2_tiny_int4, whose golden prompts
// are drawn to keep its near-tied routing away from the compared positions: 0.094).
void expect_same_outputs(const nlohmann::json& a, const nlohmann::json& b,
                         const std::string& model = "") {
  const double tolerance = testing::activations_rounded(model) ? 0.2 : 1e-4;
  ASSERT_EQ(a["sequences"].size(), b["sequences"].size());
  for (size_t s = 0; s < a["sequences"].size(); ++s) {
    const auto& x = a["sequences"][s];
    const auto& y = b["sequences"][s];
    EXPECT_EQ(x["output_ids"], y["output_ids"]) << "prompt " << s;
    for (size_t step = 0; step < x["logits"].size(); ++step) {
      for (size_t v = 0; v < x["logits"][step].size(); ++v) {
        ASSERT_NEAR(x["logits"][step][v].get<double>(), y["logits"][step][v].get<double>(),
                    tolerance);
      }
    }
  }
}

constexpr const char* kEplb =
    " --enable-eplb --eplb-rebalance-num-iterations 2 --eplb-rebalance-layers-per-chunk 1";

TEST(EplbLive, RebalancesDoNotChangeTheTokens) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  const std::string prompts = golden_prompts("deepseek_v3_tiny");
  testing::TempDir dir;
  const nlohmann::json single = run_generate(model, prompts, "", dir);
  for (const char* layout :
       {"--ep-size 2 --ep-num-redundant-experts 2",
        "--ep-size 4 --ep-num-redundant-experts 4 --moe-a2a-backend deepep",
        "--ep-size 4 --enable-dp-attention --dp-size 2 --moe-a2a-backend "
        "deepep --ep-num-redundant-experts 4",
        "--tp-size 4 --ep-size 2 --ep-num-redundant-experts 2", "--ep-size 4"}) {
    SCOPED_TRACE(layout);
    nlohmann::json result = run_generate(model, prompts, std::string(layout) + kEplb, dir);
    expect_same_outputs(single, result);
    const nlohmann::json& x = result["experts"];
    EXPECT_GE(x.value("eplb_rebalances", 0), 2);
    EXPECT_GT(x.value("eplb_layers_moved", 0), 0) << "no expert moved: the test proves nothing";
    EXPECT_EQ(x.value("eplb_chunks_failed", -1), 0);
  }
}

// Quantized experts move with their scales (FP8 values + F32 block scales; packed INT4 + BF16
// group scales), over the network and by local copies.
TEST(EplbLive, QuantizedExpertsMoveWithTheirScales) {
  for (const char* name : {"deepseek_v3_tiny_fp8", "kimi_k2_tiny_int4"}) {
    SCOPED_TRACE(name);
    const std::string model = data_dir() + "/models/" + name;
    const std::string prompts = golden_prompts(name);
    testing::TempDir dir;
    const nlohmann::json single = run_generate(model, prompts, "", dir);
    for (const char* layout : {"--ep-size 2 --ep-num-redundant-experts 2",
                               "--ep-size 4 --enable-dp-attention --dp-size 2 --moe-a2a-backend "
                               "deepep --ep-num-redundant-experts 4"}) {
      SCOPED_TRACE(layout);
      nlohmann::json result = run_generate(model, prompts, std::string(layout) + kEplb, dir);
      expect_same_outputs(single, result, name);
      const nlohmann::json& x = result["experts"];
      EXPECT_GT(x.value("eplb_layers_moved", 0), 0) << "no expert moved: the test proves nothing";
      EXPECT_EQ(x.value("eplb_chunks_failed", -1), 0);
    }
  }
}

TEST(EplbLive, DynamicDispatchOverReplicasKeepsTheTokens) {
  const std::string model = data_dir() + "/models/qwen3_moe_tiny";
  const std::string prompts = golden_prompts("qwen3_moe_tiny");
  testing::TempDir dir;
  const nlohmann::json single = run_generate(model, prompts, "", dir);
  nlohmann::json result = run_generate(
      model, prompts,
      std::string("--ep-size 2 --ep-num-redundant-experts 6 --ep-dispatch-algorithm dynamic") +
          kEplb,
      dir);
  expect_same_outputs(single, result);
  EXPECT_GT(result["experts"].value("eplb_layers_moved", 0), 0);
}

TEST(EplbLive, AFailedChunkKeepsTheOldPlacementEverywhere) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  const std::string prompts = golden_prompts("deepseek_v3_tiny");
  testing::TempDir dir;
  const nlohmann::json single = run_generate(model, prompts, "", dir);
  // Rank 1 fails the first chunk of the first rebalance.
  nlohmann::json result =
      run_generate(model, prompts, std::string("--ep-size 2 --ep-num-redundant-experts 2") + kEplb,
                   dir, 8, "EPSERVE_EPLB_FAULT=1:0:0");
  expect_same_outputs(single, result);
  const nlohmann::json& x = result["experts"];
  EXPECT_EQ(x.value("eplb_chunks_failed", 0), 1);
  EXPECT_GE(x.value("eplb_rebalances", 0), 2) << "the next rebalance still happens";
  EXPECT_GT(x.value("eplb_layers_moved", 0), 0);
}

}  // namespace
}  // namespace epserve
