// Qwen3-VL-MoE against transformers 5.24 (tools/reference/make_vl_golden.py; the tiny
// qwen3_vl_moe_tiny, fp32 compute on its BF16-rounded weights) for prompts with no image, one
// image and two images, the images' pixel values saved with the golden. Checked: the vision
// tower's output per image (merger and DeepStack features), the 3-D rotary positions and rope
// delta, the prefill logits at every position and six greedy steps (tokens exact, logits), all
// through the runtime's path for images (prepare_vision, add_vision_rows on a LocalModelRunner).
// Tolerances in the fp32 order: vision outputs 1e-4, logits 1e-4 absolute (as golden_test.cpp;
// every greedy margin in the golden is at least 1e-3). In the BF16 order (AVX512-BF16 CPUs)
// logits within 0.3 and the greedy tokens still checked only where the golden margin exceeds it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "kernels/cpu/matmul_internal.h"
#include "model/causal_lm.h"
#include "runtime/model_runner.h"
#include "runtime/vision_inputs.h"
#include "support/vl_golden.h"

namespace epserve {
namespace {

const std::string kName = "qwen3_vl_moe_tiny";

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

bool bf16_path() {
  return matmul_detail::canonical_path(DType::BF16) == matmul_detail::MatmulPath::kBf16Scalar;
}
float logit_tolerance() {
  return bf16_path() ? 0.3f : 1e-4f;
}

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

using testing::values;

class Qwen3VlGolden : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    model_ = load_causal_lm(data_dir() + "/models/" + kName).release();
    golden_ = new std::shared_ptr<SafetensorsFile>(
        SafetensorsFile::open(data_dir() + "/golden/" + kName + ".safetensors"));
    std::ifstream f(data_dir() + "/golden/" + kName + ".json");
    meta_ = new nlohmann::json(nlohmann::json::parse(f));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete golden_;
    delete meta_;
  }
  Tensor golden(const std::string& name) const { return (*golden_)->get(GetParam() + "." + name); }
  const nlohmann::json& entry() const {
    for (const auto& c : (*meta_)["cases"]) {
      if (c["name"] == GetParam()) return c;
    }
    throw std::runtime_error("no golden case " + GetParam());
  }
  GenerateInput input() const {
    GenerateInput in;
    in.input_ids = values<int32_t>(golden("input_ids"));
    for (int i = 0; i < entry()["num_images"].get<int>(); ++i) {
      const std::string p = "image" + std::to_string(i) + ".";
      auto grid = values<int32_t>(golden(p + "grid_thw"));
      ImageInput im;
      im.grid_t = grid[0];
      im.grid_h = grid[1];
      im.grid_w = grid[2];
      im.pixel_values = values<float>(golden(p + "pixel_values"));
      im.content_hash = 1000 + i;
      in.images.push_back(std::move(im));
    }
    return in;
  }

  static CausalLM* model_;
  static std::shared_ptr<SafetensorsFile>* golden_;
  static nlohmann::json* meta_;
};
CausalLM* Qwen3VlGolden::model_ = nullptr;
std::shared_ptr<SafetensorsFile>* Qwen3VlGolden::golden_ = nullptr;
nlohmann::json* Qwen3VlGolden::meta_ = nullptr;

TEST_P(Qwen3VlGolden, VisionTowerMatchesTransformers) {
  const GenerateInput in = input();
  if (in.images.empty()) GTEST_SKIP() << "no image in this case";
  const int64_t width = model_->config().vision.embed_width();
  for (size_t i = 0; i < in.images.size(); ++i) {
    const ImageInput& im = in.images[i];
    Tensor expected = golden("image" + std::to_string(i) + ".embeds");
    ASSERT_EQ(expected.dim(1), width);
    std::vector<float> out(expected.dim(0) * width);
    model_->encode_image(im.grid_t, im.grid_h, im.grid_w, im.pixel_values.data(), out.data());
    const float diff = max_abs_diff(out.data(), expected.ptr<float>(), expected.numel());
    std::printf("image %zu: max |vision diff| %.3g\n", i, diff);
    EXPECT_LE(diff, bf16_path() ? 0.05f : 1e-4f) << "image " << i;
  }
}

TEST_P(Qwen3VlGolden, MropePositionsMatchGetRopeIndex) {
  const GenerateInput in = input();
  if (in.images.empty()) GTEST_SKIP() << "no image in this case";
  RequestVision vision;
  ASSERT_EQ(prepare_vision(model_->config(), in.input_ids, in.images, vision), "");
  auto expected = values<int32_t>(golden("mrope_positions"));  // [3, n]
  const auto n = static_cast<int64_t>(in.input_ids.size());
  for (int64_t p = 0; p < n; ++p) {
    for (int a = 0; a < 3; ++a) {
      EXPECT_EQ(vision.mrope.thw[3 * p + a], expected[a * n + p]) << "position " << p;
    }
  }
  EXPECT_EQ(vision.mrope.rope_delta, entry()["rope_delta"].get<int64_t>());
}

TEST_P(Qwen3VlGolden, LogitsAndGreedyTokensMatchTransformers) {
  const GenerateInput in = input();
  RequestVision vision;
  ASSERT_EQ(prepare_vision(model_->config(), in.input_ids, in.images, vision), "");
  const auto n = static_cast<int64_t>(in.input_ids.size());
  const int64_t V = model_->vocab_size();
  const int steps = (*meta_)["decode_steps"].get<int>();
  LocalModelRunner runner(*model_, n + steps + 1);
  std::vector<int32_t> slots;
  for (int64_t i = 0; i < n; ++i) slots.push_back(static_cast<int32_t>(i));
  ForwardBatch prefill;
  prefill.add_sequence(in.input_ids.data(), n, 0, slots, LogitsWanted::kAll);
  add_vision_rows(prefill, 0, n, in.images, vision, runner);
  ASSERT_EQ(prefill.num_image_rows(), std::count(in.input_ids.begin(), in.input_ids.end(),
                                                 model_->config().vision.image_token_id));
  std::vector<float> logits(n * V);
  runner.forward(prefill, logits.data());
  Tensor expected = golden("logits");
  const float prefill_diff = max_abs_diff(logits.data(), expected.ptr<float>(), n * V);
  EXPECT_LE(prefill_diff, logit_tolerance());

  auto greedy = values<int32_t>(golden("greedy_tokens"));
  Tensor greedy_logits = golden("greedy_logits");
  const double margin = entry()["min_greedy_margin"].get<double>();
  std::vector<float> last(logits.end() - V, logits.end());
  float decode_diff = 0.0f;
  for (int s = 0; s < steps; ++s) {
    decode_diff =
        std::max(decode_diff, max_abs_diff(last.data(), greedy_logits.ptr<float>() + s * V, V));
    const auto token =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    if (!bf16_path() || margin > 2 * logit_tolerance()) {
      ASSERT_EQ(token, greedy[s]) << "greedy step " << s;
    }
    const int64_t pos = n + s;
    slots.push_back(static_cast<int32_t>(pos));
    ForwardBatch decode;
    decode.add_sequence(&greedy[s], 1, pos, slots, LogitsWanted::kLast);
    add_vision_rows(decode, pos, 1, in.images, vision, runner);
    runner.forward(decode, last.data());
  }
  EXPECT_LE(decode_diff, logit_tolerance());
  std::printf("max |logit diff| prefill %.3g, decode %.3g (%s path)\n", prefill_diff, decode_diff,
              bf16_path() ? "bf16" : "fp32");
}

INSTANTIATE_TEST_SUITE_P(Cases, Qwen3VlGolden,
                         ::testing::Values("text", "one_image", "two_images"));

}  // namespace
}  // namespace epserve
