// Qwen3-VL requests through the scheduler, the runtime's entry point for images
// (GenerateInput::images): chunked prefill that cuts through images gives transformers' greedy
// tokens and encodes each image once; the prefix cache reuses an image's KV only for the same
// image (content hash); a prompt whose image tokens do not fit its images is refused.
#include <gtest/gtest.h>

#include <map>

#include "io/safetensors.h"
#include "kernels/cpu/matmul_internal.h"
#include "model/causal_lm.h"
#include "runtime/model_runner.h"
#include "runtime/scheduler.h"
#include "support/vl_golden.h"

namespace epserve {
namespace {

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

bool bf16_path() {
  return matmul_detail::canonical_path(DType::BF16) == matmul_detail::MatmulPath::kBf16Scalar;
}

using testing::values;

// A local runner that counts the images it encodes.
class CountingRunner : public LocalModelRunner {
 public:
  using LocalModelRunner::LocalModelRunner;
  void encode_image(int64_t t, int64_t h, int64_t w, const float* pixels, float* out) override {
    ++encoded;
    LocalModelRunner::encode_image(t, h, w, pixels, out);
  }
  int encoded = 0;
};

class Qwen3VlScheduler : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = SafetensorsFile::open(data_dir() + "/golden/qwen3_vl_moe_tiny.safetensors");
  }
  GenerateInput input(const std::string& c, int64_t max_new) const {
    return testing::vl_golden_input(*golden_, c, max_new, 0x1234);
  }
  std::vector<int32_t> greedy(const std::string& c) const {
    return values<int32_t>(golden_->get(c + ".greedy_tokens"));
  }
  // Runs the requests to the end; the outputs by rid.
  static std::map<std::string, TokenOutput> run(Scheduler& s, std::vector<GenerateInput> inputs) {
    std::map<std::string, TokenOutput> done;
    std::vector<TokenOutput> out;
    for (auto& in : inputs) s.add(std::move(in), out);
    for (int i = 0; i < 200; ++i) {
      for (const TokenOutput& o : out) {
        TokenOutput& d = done[o.rid];
        d.token_ids.insert(d.token_ids.end(), o.token_ids.begin(), o.token_ids.end());
        if (o.finished) {
          d.finished = true;
          d.error = o.error;
          d.cached_tokens = o.cached_tokens;
        }
      }
      out.clear();
      if (!s.has_work()) return done;
      s.step(out);
    }
    ADD_FAILURE() << "scheduler did not drain";
    return done;
  }

  std::shared_ptr<SafetensorsFile> golden_;
};

TEST_F(Qwen3VlScheduler, ChunkedPrefillThroughImagesGivesTransformersTokens) {
  if (bf16_path()) GTEST_SKIP() << "greedy tokens are compared in the fp32 order (fp32_ tests)";
  CountingRunner runner(load_causal_lm(data_dir() + "/models/qwen3_vl_moe_tiny"), 512);
  SchedulerConfig config;
  config.chunked_prefill_size = 5;  // every image is cut by a chunk boundary
  Scheduler s(runner, config);
  auto done = run(s, {input("text", 6), input("one_image", 6), input("two_images", 6)});
  for (const char* c : {"text", "one_image", "two_images"}) {
    EXPECT_EQ(done[c].error, "") << c;
    EXPECT_EQ(done[c].token_ids, greedy(c)) << c;
  }
  EXPECT_EQ(runner.encoded, 3);  // each image once, though chunks cut through them
}

TEST_F(Qwen3VlScheduler, PrefixCacheKeysImagesByContent) {
  CountingRunner runner(load_causal_lm(data_dir() + "/models/qwen3_vl_moe_tiny"), 512);
  Scheduler s(runner, SchedulerConfig{});
  GenerateInput first = input("one_image", 2);
  auto baseline = run(s, {first});
  ASSERT_EQ(baseline["one_image"].error, "");
  const auto& ids = first.input_ids;
  const auto image_start =
      std::find(ids.begin(), ids.end(), runner.config().vision.image_token_id) - ids.begin();
  // The same image again: the whole prompt but its last token comes from the cache.
  GenerateInput same = input("one_image", 2);
  same.rid = "same";
  auto again = run(s, {same});
  EXPECT_EQ(again["same"].cached_tokens, static_cast<int64_t>(ids.size()) - 1);
  EXPECT_EQ(again["same"].token_ids, baseline["one_image"].token_ids);
  // Same tokens, another image (other pixels, other hash): only the text before it is reused.
  GenerateInput other = input("one_image", 2);
  other.rid = "other";
  other.images[0].content_hash ^= 0xff;
  for (float& v : other.images[0].pixel_values) v = -v;
  auto changed = run(s, {other});
  EXPECT_EQ(changed["other"].cached_tokens, image_start);
  EXPECT_EQ(runner.encoded, 2);  // the cached image was not encoded again
  // Hashes equal in their low 30 bits are still different images.
  GenerateInput high = input("one_image", 2);
  high.rid = "high";
  high.images[0].content_hash ^= uint64_t{1} << 40;
  auto high_bits = run(s, {high});
  EXPECT_EQ(high_bits["high"].cached_tokens, image_start);
  EXPECT_EQ(runner.encoded, 3);
}

TEST_F(Qwen3VlScheduler, ImageTokensThatDoNotFitTheImagesAreRefused) {
  LocalModelRunner runner(load_causal_lm(data_dir() + "/models/qwen3_vl_moe_tiny"), 512);
  Scheduler s(runner, SchedulerConfig{});
  GenerateInput missing = input("one_image", 2);
  missing.rid = "missing";
  missing.images.clear();
  GenerateInput extra = input("one_image", 2);
  extra.rid = "extra";
  extra.images.push_back(extra.images[0]);
  GenerateInput pixels = input("one_image", 2);
  pixels.rid = "pixels";
  pixels.images[0].pixel_values.pop_back();
  GenerateInput frames = input("one_image", 2);
  frames.rid = "frames";
  frames.images[0].grid_t = 2;  // a two-frame clip: video is not supported
  auto done = run(s, {missing, extra, pixels, frames});
  EXPECT_NE(done["missing"].error.find("do not match its images"), std::string::npos)
      << done["missing"].error;
  EXPECT_NE(done["extra"].error.find("2 images but the prompt has 1"), std::string::npos)
      << done["extra"].error;
  EXPECT_NE(done["pixels"].error.find("pixel values"), std::string::npos) << done["pixels"].error;
  EXPECT_NE(done["frames"].error.find("video is not supported"), std::string::npos)
      << done["frames"].error;
}

}  // namespace
}  // namespace epserve
