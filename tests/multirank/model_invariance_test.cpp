// Every parallel layout gives the tokens of one rank. `epserve generate` runs the golden prompts
// of the tiny fixture models with W = 1, 2 and 4 ranks in several layouts (experts over ranks
// with either MoE backend and dispatch mode, heads over ranks); greedy tokens must equal the
// single-rank run's, logits must agree within 1e-4 (the only difference is the order in which
// tensor-parallel partial sums of attention are added: about 6e-6 here), and for a given world
// size and attention-group size every layout must give bit-identical logits (expert
// parallelism itself is exact; DP attention with groups of one rank is exact too). The quantized
// fixtures (FP8 blocks everywhere, INT4 routed experts) keep their formats in every layout: the
// experts' packed weights and scales stay on their ranks and only activations travel.
// On a CPU with AVX512-BF16, BF16 weights take the BF16 order, which rounds each matmul's input
// to bf16: a partial-sum difference of one fp32 ulp can move an input across a bf16 rounding
// boundary (2^-8 relative), so layouts that split heads differ from one rank by up to
// kLogitToleranceBf16 (measured on Zen 5: up to 0.06 on deepseek_v3_tiny, where the heads are
// split; qwen3_moe_tiny stays exact); the other checks are unchanged. Such a step also moves router
// scores (up to about 5e-3 with INT4-A8 experts), which can flip a near-tied expert and move that
// token's logits by O(1): kimi_k2_tiny_int4's 384 experts leave small top-8 margins. Its golden
// prompts are drawn aiming at a floor of 3e-3 on the router margins of the compared positions, but
// only prompt 0 clears it (the others are the best of 400 draws, down to 0.001), so the test passes
// because this CPU's rounding lands away from those ties, not because the margins exclude a flip
// (docs/quantization.md, "384 experts and near-tied routing"); measured here: up to 0.094.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/matmul_order.h"
#include "support/run_epserve.h"
#include "support/run_generate.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

constexpr double kLogitTolerance = 1e-4;
constexpr double kLogitToleranceBf16 = 0.2;

double logit_tolerance(const std::string& model) {
  return testing::activations_rounded(model) ? kLogitToleranceBf16 : kLogitTolerance;
}

struct Layout {
  int world;
  std::string flags;
};

const std::vector<Layout> kLayouts = {
    {1, ""},
    {2, "--ep-size 2"},
    {2, "--ep-size 2 --moe-a2a-backend deepep --deepep-mode normal"},
    {2, "--ep-size 2 --moe-a2a-backend deepep --deepep-mode low_latency"},
    {2, "--tp-size 2 --ep-size 1"},
    // deepep spreads the experts over every rank (ep = W), in generate as in serve.
    {2, "--tp-size 2 --moe-a2a-backend deepep"},
    {4, "--ep-size 4"},
    {4, "--ep-size 4 --moe-a2a-backend deepep"},
    {4, "--tp-size 4 --ep-size 2"},
    // DP attention: D groups of W / D ranks; each request is served by one group.
    {2, "--ep-size 2 --enable-dp-attention"},
    {4, "--ep-size 4 --enable-dp-attention --moe-a2a-backend deepep"},
    {4, "--ep-size 4 --enable-dp-attention --dp-size 2"},
    {4,
     "--ep-size 4 --enable-dp-attention --dp-size 2 --moe-a2a-backend deepep "
     "--enable-dp-lm-head"},
};

using testing::run_generate;

class LayoutInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(LayoutInvariance, EveryLayoutGivesTheTokensOfOneRank) {
  const std::string model = data_dir() + "/models/" + GetParam();
  auto golden = SafetensorsFile::open(data_dir() + "/golden/" + GetParam() + ".safetensors");
  std::string prompts;
  for (int p = 0; p < 4; ++p) {
    Tensor ids = golden->get(fmt::format("prompt{}.input_ids", p));
    std::string list;
    for (int64_t i = 0; i < ids.numel(); ++i) {
      list += (i ? "," : "") + std::to_string(ids.ptr<int32_t>()[i]);
    }
    prompts += " --input-ids " + list;
  }
  testing::TempDir dir;
  nlohmann::json single = run_generate(model, prompts, "", dir);
  std::map<int, nlohmann::json> first_of_world;
  for (const Layout& layout : kLayouts) {
    SCOPED_TRACE(layout.flags);
    nlohmann::json result = run_generate(model, prompts, layout.flags, dir);
    ASSERT_EQ(result["sequences"].size(), 4u);
    for (size_t s = 0; s < 4; ++s) {
      const auto& a = single["sequences"][s];
      const auto& b = result["sequences"][s];
      EXPECT_EQ(a["output_ids"], b["output_ids"]) << "prompt " << s;
      double max_diff = 0.0;
      for (size_t step = 0; step < a["logits"].size(); ++step) {
        for (size_t v = 0; v < a["logits"][step].size(); ++v) {
          double d =
              std::fabs(a["logits"][step][v].get<double>() - b["logits"][step][v].get<double>());
          max_diff = std::max(max_diff, d);
        }
      }
      EXPECT_LE(max_diff, logit_tolerance(GetParam())) << "prompt " << s;
      if (max_diff > 0)
        std::printf("%s prompt %zu: max |logit diff| %.3g\n", layout.flags.c_str(), s, max_diff);
    }
    // Logits depend only on how the heads are split: the size of the attention group.
    int group = layout.world;
    if (layout.flags.find("--enable-dp-attention") != std::string::npos) {
      group = layout.flags.find("--dp-size 2") != std::string::npos ? layout.world / 2 : 1;
    }
    auto [it, inserted] = first_of_world.emplace(group, result);
    if (!inserted) {
      EXPECT_EQ(it->second, result) << "layouts with attention groups of " << group << " differ";
    }
  }
}

const char* const kVisionModel = "qwen3_vl_moe_tiny";

std::string vision_golden_file() {
  return data_dir() + "/golden/" + kVisionModel + ".safetensors";
}

// The `generate` arguments of the golden cases (text, one_image, two_images), in this order.
std::string vision_prompts(const std::vector<std::string>& cases) {
  const std::string file = vision_golden_file();
  auto golden = SafetensorsFile::open(file);
  std::string prompts;
  for (const std::string& c : cases) {
    Tensor ids = golden->get(c + ".input_ids");
    std::string list;
    for (int64_t i = 0; i < ids.numel(); ++i) {
      list += (i ? "," : "") + std::to_string(ids.ptr<int32_t>()[i]);
    }
    prompts += " --input-ids " + list;
    for (int i = 0; golden->has(fmt::format("{}.image{}.grid_thw", c, i)); ++i) {
      prompts += fmt::format(" --image-tensors {}:{}.image{}", file, c, i);
    }
  }
  return prompts;
}

// Every sequence of `b` has the output tokens of `a` and logits within the tolerance.
void expect_same_generation(const nlohmann::json& a, const nlohmann::json& b,
                            const std::vector<std::string>& cases) {
  ASSERT_TRUE(b.contains("sequences"));
  ASSERT_EQ(b["sequences"].size(), cases.size());
  for (size_t s = 0; s < cases.size(); ++s) {
    const auto& x = a["sequences"][s];
    const auto& y = b["sequences"][s];
    EXPECT_EQ(x["output_ids"], y["output_ids"]) << cases[s];
    double max_diff = 0.0;
    for (size_t step = 0; step < x["logits"].size(); ++step) {
      for (size_t v = 0; v < x["logits"][step].size(); ++v) {
        max_diff = std::max(max_diff, std::fabs(x["logits"][step][v].get<double>() -
                                                y["logits"][step][v].get<double>()));
      }
    }
    EXPECT_LE(max_diff, logit_tolerance(kVisionModel)) << cases[s];
  }
}

// Qwen3-VL-MoE with images (prompts with none, one and two images, their pixel values from the
// golden through --image-tensors): every layout gives one rank's tokens and logits within the
// tolerance, and with one rank transformers' greedy tokens. The vision tower runs on the leader
// of the group that owns each request; under DP attention the prompts are spread over groups.
TEST(LayoutInvarianceWithImages, Qwen3VlMoe) {
  const std::string name = kVisionModel;
  const std::string model = data_dir() + "/models/" + name;
  auto golden = SafetensorsFile::open(vision_golden_file());
  const std::vector<std::string> cases = {"text", "one_image", "two_images"};
  const std::string prompts = vision_prompts(cases);
  testing::TempDir dir;
  nlohmann::json single = run_generate(model, prompts, "", dir);
  ASSERT_EQ(single["sequences"].size(), cases.size());
  if (!testing::activations_rounded(name)) {
    for (size_t s = 0; s < cases.size(); ++s) {
      Tensor greedy = golden->get(cases[s] + ".greedy_tokens");
      std::vector<int32_t> expected(greedy.ptr<int32_t>(), greedy.ptr<int32_t>() + 6);
      auto got = single["sequences"][s]["output_ids"].get<std::vector<int32_t>>();
      got.resize(6);
      EXPECT_EQ(got, expected) << cases[s];
    }
  }
  for (const Layout& layout : kLayouts) {
    if (layout.world == 1) continue;
    SCOPED_TRACE(layout.flags);
    expect_same_generation(single, run_generate(model, prompts, layout.flags, dir), cases);
  }
}

// With two-batch overlap (split whenever SGLang would: EPSERVE_TBO_POLICY=always) each
// micro-batch carries the 3-D positions, image rows and DeepStack features of its own tokens.
// Every overlapped layout gives one rank's tokens and logits within the tolerance, and the bits
// of the same layout without the overlap. The batches (prefill; decode then splits by sequences):
//   text + one_image + two_images: split by sequences (26 | 27 tokens): A mixes a text-only and an
//     image request, B's image rows start from its own first row;
//   text + two_images: 9 + 27 tokens cut at token 18, inside two_images' first image (5 of its 6
//     rows in A, the last in B);
//   one_image: 17 tokens cut at token 8, inside its image (rows 6, 7 in A, 8 .. 11 in B).
// Under DP attention the prompts are spread over the groups; one_image alone is cut in every one.
TEST(LayoutInvarianceWithImages, TwoBatchOverlapSplitsImages) {
  const std::string model = data_dir() + "/models/" + kVisionModel;
  const std::vector<std::vector<std::string>> batches = {
      {"text", "one_image", "two_images"}, {"text", "two_images"}, {"one_image"}};
  const std::vector<std::string> layouts = {
      "--ep-size 2 --moe-a2a-backend deepep --deepep-mode normal",
      // Prefill is not split in low-latency mode (as in SGLang); decode is.
      "--ep-size 2 --moe-a2a-backend deepep --deepep-mode low_latency",
      "--tp-size 2 --moe-a2a-backend deepep",
      "--ep-size 2 --enable-dp-attention --moe-a2a-backend deepep",
      "--ep-size 4 --enable-dp-attention --dp-size 2 --moe-a2a-backend deepep",
  };
  const std::string env = "EPSERVE_TBO_POLICY=always";
  testing::TempDir dir;
  for (const auto& cases : batches) {
    const std::string prompts = vision_prompts(cases);
    SCOPED_TRACE(prompts);
    nlohmann::json single = run_generate(model, prompts, "", dir, 8, env);
    for (const std::string& layout : layouts) {
      SCOPED_TRACE(layout);
      nlohmann::json plain = run_generate(model, prompts, layout, dir, 8, env);
      nlohmann::json overlapped =
          run_generate(model, prompts, layout + " --enable-two-batch-overlap", dir, 8, env);
      expect_same_generation(single, overlapped, cases);
      EXPECT_EQ(plain["sequences"], overlapped["sequences"]) << "the overlap changed a bit";
    }
  }
}

// A traced pass runs the stage program (on the whole batch without the overlap): a vision model's
// DeepStack additions are operations of it, with spans for both micro-batches when it is split,
// and tracing changes no bit.
TEST(LayoutInvarianceWithImages, TracedPassesKeepTheBits) {
  const std::string model = data_dir() + "/models/" + kVisionModel;
  const std::string prompts = vision_prompts({"text", "one_image", "two_images"});
  const std::string layout = "--ep-size 2 --moe-a2a-backend deepep";
  const std::string env = "EPSERVE_TBO_POLICY=always";
  testing::TempDir dir;
  const std::string trace = dir.file("trace.json");
  nlohmann::json plain = run_generate(model, prompts, layout, dir, 4, env);
  for (const std::string& flags : {layout, layout + " --enable-two-batch-overlap"}) {
    SCOPED_TRACE(flags);
    std::remove(trace.c_str());
    nlohmann::json traced =
        run_generate(model, prompts, flags + " --trace-file " + trace, dir, 4, env);
    EXPECT_EQ(plain["sequences"], traced["sequences"]);
    std::ifstream in(trace);
    ASSERT_TRUE(in.good()) << "no trace at " << trace;
    std::set<std::pair<int, int>> deepstack;  // (layer, micro-batch)
    const nlohmann::json events = nlohmann::json::parse(in).at("traceEvents");
    for (const auto& e : events) {
      if (e.at("ph") == "X" && e.at("name") == "deepstack") {
        deepstack.insert({e.at("args").at("layer").get<int>(), e.at("tid").get<int>()});
      }
    }
    const bool overlapped = flags.find("overlap") != std::string::npos;
    std::set<std::pair<int, int>> expected = {{0, 0}, {1, 0}};
    if (overlapped) expected.insert({{0, 1}, {1, 1}});
    EXPECT_EQ(deepstack, expected);
  }
}

// One request over four attention groups: three groups have nothing to do and join every
// forward with an empty batch; the request still gets one rank's tokens.
TEST(DpAttention, IdleGroupsJoinWithEmptyBatches) {
  const std::string model = data_dir() + "/models/deepseek_v3_tiny";
  testing::TempDir dir;
  const std::string prompt = "--input-ids 7,8,9,10,11";
  nlohmann::json single = run_generate(model, prompt, "", dir);
  for (const char* flags : {"--ep-size 4 --enable-dp-attention",
                            "--ep-size 4 --enable-dp-attention --moe-a2a-backend deepep"}) {
    EXPECT_EQ(run_generate(model, prompt, flags, dir), single) << flags;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, LayoutInvariance,
                         ::testing::Values("deepseek_v3_tiny", "qwen3_moe_tiny",
                                           "deepseek_v3_tiny_fp8", "kimi_k2_tiny_int4"));

}  // namespace
}  // namespace epserve
