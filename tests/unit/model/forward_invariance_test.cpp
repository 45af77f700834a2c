// Model-level invariance of the forward pass: a token's logits have the same bits whether its
// prompt is prefilled at once, in chunks or token by token (decode steps), next to another
// sequence in the batch or alone, and on 1, 2 or 3 threads. The kernels guarantee it one by one
// (canonical orders); this checks that the model composes them without breaking it.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/causal_lm.h"

namespace epserve {
namespace {

class ForwardInvariance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = load_causal_lm(std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + GetParam());
    for (int i = 0; i < kLen; ++i) prompt_.push_back(3 + (i * 53) % 500);
    for (int i = 0; i < kOtherLen; ++i) other_.push_back(5 + (i * 29) % 400);
  }
  void TearDown() override { ThreadPool::set_global_threads(available_cores()); }

  // Slots of our sequence: even ids, in a scattered order; the other sequence gets odd ones.
  std::vector<int32_t> slots(int64_t n) const {
    std::vector<int32_t> s;
    for (int64_t i = 0; i < n; ++i) s.push_back(static_cast<int32_t>(((i * 7) % kLen) * 2));
    return s;
  }
  std::vector<int32_t> other_slots() const {
    std::vector<int32_t> s;
    for (int64_t i = 0; i < kOtherLen; ++i) s.push_back(static_cast<int32_t>(i * 2 + 1));
    return s;
  }
  KvCache new_cache() const {
    return KvCache(model_->config().num_layers, 2 * kLen + 2, model_->kv_layout());
  }

  // Logits of every prompt position, running [0, kLen) in pieces of the given sizes.
  std::vector<float> run_in_pieces(const std::vector<int64_t>& pieces, bool with_other) {
    KvCache cache = new_cache();
    const int64_t V = model_->vocab_size();
    std::vector<float> all;
    int64_t done = 0;
    for (int64_t n : pieces) {
      ForwardBatch batch;
      if (with_other && done == 0) {
        batch.add_sequence(other_.data(), kOtherLen, 0, other_slots(), LogitsWanted::kLast);
      }
      batch.add_sequence(prompt_.data() + done, n, done, slots(done + n), LogitsWanted::kAll);
      std::vector<float> logits(batch.num_logit_rows() * V);
      model_->forward(batch, cache, logits.data());
      int64_t skip = with_other && done == 0 ? V : 0;
      all.insert(all.end(), logits.begin() + skip, logits.end());
      done += n;
    }
    EXPECT_EQ(done, kLen);
    return all;
  }

  static constexpr int64_t kLen = 29;
  static constexpr int64_t kOtherLen = 11;
  std::unique_ptr<CausalLM> model_;
  std::vector<int32_t> prompt_, other_;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_P(ForwardInvariance, LogitsIndependentOfChunkingBatchAndThreads) {
  ThreadPool::set_global_threads(2);
  std::vector<float> whole = run_in_pieces({kLen}, false);
  ASSERT_EQ(static_cast<int64_t>(whole.size()), kLen * model_->vocab_size());

  ThreadPool::set_global_threads(1);
  std::vector<int64_t> chunks_then_decode = {9, 12};
  for (int64_t i = 21; i < kLen; ++i) chunks_then_decode.push_back(1);
  EXPECT_TRUE(same_bits(whole, run_in_pieces(chunks_then_decode, false)))
      << "chunked prefill + decode, 1 thread";

  ThreadPool::set_global_threads(3);
  EXPECT_TRUE(same_bits(whole, run_in_pieces({kLen}, true))) << "beside another sequence";
  EXPECT_TRUE(same_bits(whole, run_in_pieces({5, 20, 1, 1, 1, 1}, true)))
      << "beside another sequence, chunked";
}

INSTANTIATE_TEST_SUITE_P(Models, ForwardInvariance,
                         ::testing::Values("deepseek_v3_tiny", "deepseek_v3_tiny_noqlora",
                                           "qwen3_moe_tiny"));

}  // namespace
}  // namespace epserve
