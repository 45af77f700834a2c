// vision_attention (score and output GEMMs through matmul_untransposed, the attention softmax)
// against its definition in double: several query blocks with a partial last one, head_dim not a
// multiple of eight, one token, and a 2-thread pool (heads in parallel) giving the same bits as
// one.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/vision_attention.h"

namespace epserve {
namespace {

std::vector<float> qkv_values(int64_t n, int64_t heads, int64_t hd) {
  std::vector<float> v(n * 3 * heads * hd);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = 2.0f * std::sin(0.37f * static_cast<float>(i % 1009) + 0.011f * static_cast<float>(i));
  }
  return v;
}

void expect_matches_reference(int64_t n, int64_t heads, int64_t hd) {
  const auto qkv = qkv_values(n, heads, hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> fast(n * heads * hd, -1.0f), ref(n * heads * hd);
  vision_attention(qkv.data(), n, heads, hd, scale, fast.data());
  vision_attention_reference(qkv.data(), n, heads, hd, scale, ref.data());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_NEAR(fast[i], ref[i], 2e-6f * (1.0f + std::fabs(ref[i])))
        << "n " << n << " heads " << heads << " hd " << hd << " at " << i;
  }
}

TEST(VisionAttention, MatchesReferenceAcrossQueryBlocks) {
  expect_matches_reference(kVisionQueryBlock + 45, 3, 20);  // two blocks, the last partial
}

TEST(VisionAttention, MatchesReferenceOnSmallShapes) {
  expect_matches_reference(1, 2, 16);
  expect_matches_reference(7, 1, 72);  // Qwen3-VL's head_dim, fewer tokens than a tile
  expect_matches_reference(64, 2, 13);
}

TEST(VisionAttention, ThreadCountDoesNotChangeTheBits) {
  const int64_t n = 100, heads = 4, hd = 24;
  const auto qkv = qkv_values(n, heads, hd);
  std::vector<float> one(n * heads * hd), two(n * heads * hd);
  ThreadPool::set_global_threads(1);
  vision_attention(qkv.data(), n, heads, hd, 0.2f, one.data());
  ThreadPool::set_global_threads(2);
  vision_attention(qkv.data(), n, heads, hd, 0.2f, two.data());
  ThreadPool::set_global_threads(available_cores());
  EXPECT_EQ(one, two);
}

}  // namespace
}  // namespace epserve
