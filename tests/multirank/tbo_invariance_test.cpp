// Two-batch overlap changes no bit: `epserve generate` with --enable-two-batch-overlap gives the
// tokens and logits of the same layout without it, for both architectures, W = 2 and 4, DP
// attention off and on, prefill (split by sequences, and one prompt cut in two) and decode
// (split by sequences, and one sequence: micro-batch A empty), and across EPLB rebalances. The
// kernels give a row the same bits whatever else is in its batch, and the split keeps every
// row's reductions (attention over its sequence's KV, the head all-reduce, the top-k combine) in
// the same order.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/golden_prompts.h"
#include "support/run_epserve.h"
#include "support/run_generate.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

// The overlap must run although one node never pays for it (EPSERVE_TBO_POLICY, tbo_split.h).
nlohmann::json run_tbo(const std::string& model, const std::string& prompts,
                       const std::string& flags, const testing::TempDir& dir,
                       const std::string& policy = "always") {
  return testing::run_generate(model, prompts, flags, dir, 6, "EPSERVE_TBO_POLICY=" + policy);
}

using testing::golden_prompts;

// One long prompt and a short one: the best split by sequences leaves 3 of 27 tokens on one
// side (under 0.48), so the long prompt is cut in two; decode then splits 1 / 1.
std::string uneven_prompts() {
  std::string list;
  for (int i = 0; i < 24; ++i) list += (i ? "," : "") + std::to_string(3 + (i * 37) % 400);
  return "--input-ids " + list + " --input-ids 5,6,7";
}

constexpr const char* kTbo = " --enable-two-batch-overlap";

void expect_tbo_changes_nothing(const std::string& model, const std::string& prompts,
                                const std::string& layout, const testing::TempDir& dir) {
  SCOPED_TRACE(layout);
  nlohmann::json plain = run_tbo(model, prompts, layout, dir);
  nlohmann::json overlapped = run_tbo(model, prompts, layout + kTbo, dir);
  ASSERT_FALSE(plain["sequences"].empty());
  EXPECT_EQ(plain["sequences"], overlapped["sequences"]) << "tokens or logits differ";
}

class TboInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(TboInvariance, OverlapGivesTheBitsOfTheUnsplitBatch) {
  const std::string model = data_dir() + "/models/" + GetParam();
  testing::TempDir dir;
  const std::string golden = golden_prompts(GetParam());
  for (const char* layout : {
           "--tp-size 2 --moe-a2a-backend deepep",
           "--tp-size 2 --moe-a2a-backend deepep --deepep-mode low_latency",
           "--ep-size 2 --enable-dp-attention --moe-a2a-backend deepep",
           "--tp-size 4 --moe-a2a-backend deepep --deepep-mode normal",
           "--ep-size 4 --enable-dp-attention --moe-a2a-backend deepep",
           "--ep-size 4 --enable-dp-attention --dp-size 2 --moe-a2a-backend deepep",
       }) {
    expect_tbo_changes_nothing(model, golden, layout, dir);
  }
  for (const char* layout : {"--tp-size 2 --moe-a2a-backend deepep",
                             "--ep-size 2 --enable-dp-attention --moe-a2a-backend deepep"}) {
    expect_tbo_changes_nothing(model, uneven_prompts(), layout, dir);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TboInvariance,
                         ::testing::Values("deepseek_v3_tiny", "qwen3_moe_tiny"));

// Tokens equal one rank's, and live EPLB moving experts between passes changes nothing either.
TEST(TboInvariance, OneRanksTokensAndEplbRebalances) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  const std::string prompts = golden_prompts("deepseek_v3_tiny");
  testing::TempDir dir;
  const nlohmann::json single = run_tbo(model, prompts, "", dir);
  const std::string layout =
      "--ep-size 4 --moe-a2a-backend deepep --ep-num-redundant-experts 4 --enable-eplb "
      "--eplb-rebalance-num-iterations 2 --eplb-rebalance-layers-per-chunk 1";
  nlohmann::json plain = run_tbo(model, prompts, layout, dir);
  nlohmann::json overlapped = run_tbo(model, prompts, layout + kTbo, dir);
  EXPECT_EQ(plain["sequences"], overlapped["sequences"]);
  EXPECT_GT(overlapped["experts"].value("eplb_layers_moved", 0), 0) << "no expert moved";
  for (size_t s = 0; s < 4; ++s) {
    EXPECT_EQ(single["sequences"][s]["output_ids"], overlapped["sequences"][s]["output_ids"]);
  }
}

// The low-latency receive layouts (EPSERVE_LOW_LATENCY_LAYOUT): "rows" (the default, experts
// read their rows in place) and DeepEP's "expand" give the same bits, with and without the
// overlap; anything else is refused.
TEST(TboInvariance, BothLowLatencyLayoutsGiveTheSameBits) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  const std::string prompts = golden_prompts("deepseek_v3_tiny");
  testing::TempDir dir;
  const std::string layout = "--tp-size 2 --moe-a2a-backend deepep --deepep-mode low_latency";
  auto run = [&](const std::string& env, const std::string& flags) {
    std::string out = dir.file("out.json");
    std::remove(out.c_str());
    testing::RunResult r = testing::run_epserve(
        fmt::format("generate --model-path {} {} --max-new-tokens 6 --ignore-eos --return-logits "
                    "--output {} {}",
                    model, prompts, out, flags),
        "EPSERVE_TBO_POLICY=always EPSERVE_LOW_LATENCY_LAYOUT=" + env);
    EXPECT_EQ(r.exit_code, 0) << env << " " << flags << "\n" << r.output;
    std::ifstream in(out);
    return in ? nlohmann::json::parse(in)["sequences"] : nlohmann::json();
  };
  const nlohmann::json expand = run("expand", layout);
  ASSERT_FALSE(expand.empty());
  EXPECT_EQ(run("rows", layout), expand);
  EXPECT_EQ(run("rows", layout + kTbo), expand);
  testing::RunResult bad = testing::run_epserve(
      fmt::format("generate --model-path {} --input-ids 1,2 --max-new-tokens 1 {}", model, layout),
      "EPSERVE_LOW_LATENCY_LAYOUT=wide");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("must be 'rows' or 'expand'"), std::string::npos) << bad.output;
}

// SGLang refuses the overlap without an all-to-all backend; on one rank with deepep it runs
// (nothing to hide) and gives the same bits.
TEST(TboInvariance, BackendNoneIsRefusedAndOneRankRuns) {
  const std::string model = data_dir() + "/models/qwen3_moe_tiny";
  testing::TempDir dir;
  testing::RunResult r = testing::run_epserve(fmt::format(
      "generate --model-path {} --input-ids 1,2,3 --max-new-tokens 2 --ep-size 2{}", model, kTbo));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("moe_a2a_backend cannot be 'none'"), std::string::npos) << r.output;
  expect_tbo_changes_nothing(model, uneven_prompts(), "--moe-a2a-backend deepep", dir);
}

// --trace-file: one valid Chrome/Perfetto JSON with a track per rank and, with the overlap,
// compute and communication spans for both micro-batches.
TEST(TboTrace, TheTraceHasBothMicroBatchesOnEveryRank) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  testing::TempDir dir;
  const std::string trace = dir.file("trace.json");
  run_tbo(model, golden_prompts("deepseek_v3_tiny"),
          "--tp-size 2 --moe-a2a-backend deepep --trace-file " + trace + kTbo, dir);
  std::ifstream in(trace);
  ASSERT_TRUE(in.good()) << "no trace at " << trace;
  nlohmann::json j = nlohmann::json::parse(in);      // throws on invalid JSON
  std::set<std::tuple<int, int, std::string>> seen;  // (rank, micro-batch, category)
  std::set<std::string> names;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
    seen.insert({e.at("pid").get<int>(), e.at("tid").get<int>(), e.at("cat").get<std::string>()});
    // The combine's wait is communication; the weighted sum after it is compute.
    if (e.at("name") == "combine_wait") EXPECT_EQ(e.at("cat"), "comm");
    if (e.at("name") == "combine_sum") EXPECT_EQ(e.at("cat"), "compute");
    names.insert(e.at("name").get<std::string>());
  }
  for (int rank = 0; rank < 2; ++rank) {
    for (int mb = 0; mb < 2; ++mb) {
      for (const char* cat : {"comm", "compute"}) {
        EXPECT_TRUE(seen.count({rank, mb, cat})) << "rank " << rank << " mb " << mb << " " << cat;
      }
    }
  }
  for (const char* name : {"attn", "route", "dispatch_start", "dispatch_wait", "experts",
                           "combine_start", "combine_wait", "combine_sum"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  EXPECT_FALSE(std::ifstream(trace + ".rank0").good()) << "the rank files are merged";
}

// epserve's default per-step rule (EPSERVE_TBO_POLICY=auto): on one node (and with these small
// batches) a split does not pay, so with the flag on every pass still runs whole (no span of
// micro-batch B), and the bits are those of the overlapped run.
TEST(TboTrace, TheAutoPolicyKeepsOneNodePassesWhole) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  const std::string prompts = golden_prompts("deepseek_v3_tiny");
  testing::TempDir dir;
  const std::string trace = dir.file("trace.json");
  const std::string layout = "--tp-size 2 --moe-a2a-backend deepep";
  nlohmann::json split = run_tbo(model, prompts, layout + kTbo, dir);
  nlohmann::json whole =
      run_tbo(model, prompts, layout + kTbo + " --trace-file " + trace, dir, "auto");
  EXPECT_EQ(split["sequences"], whole["sequences"]);
  std::ifstream in(trace);
  ASSERT_TRUE(in.good()) << "no trace at " << trace;
  nlohmann::json j = nlohmann::json::parse(in);
  int spans = 0;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    ++spans;
    EXPECT_EQ(e.at("tid").get<int>(), 0) << e.at("name") << " ran as micro-batch B";
  }
  EXPECT_GT(spans, 0);
}

}  // namespace
}  // namespace epserve
