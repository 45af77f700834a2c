// LocalExperts::forward_slots: on several threads, decode-sized batches (few tokens per expert)
// go to the threads as whole experts; every (token, slot) output must be bit for bit the
// expert's own product of that token's row, whatever the thread count and the routing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "model/moe.h"
#include "model/moe_stage.h"

namespace epserve {
namespace {

constexpr int64_t kHidden = 64;
constexpr int64_t kInter = 48;
constexpr int kExperts = 24;
constexpr int kTopK = 4;

Linear random_linear(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  Tensor t = Tensor::empty(DType::F32, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) t.f32()[i] = u(rng);
  return Linear::of(std::move(t));
}

class LocalExpertsThreads : public ::testing::Test {
 protected:
  void TearDown() override { ThreadPool::set_global_threads(available_cores()); }
};

TEST_F(LocalExpertsThreads, SlotsEqualEachExpertAloneBitwise) {
  std::mt19937 rng(7);
  std::vector<GatedMlp> mlps;
  for (int e = 0; e < kExperts; ++e) {
    Linear gate = random_linear(kInter, kHidden, rng);
    Linear up = random_linear(kInter, kHidden, rng);
    Linear down = random_linear(kHidden, kInter, rng);
    mlps.push_back(GatedMlp::of(std::move(gate), std::move(up), std::move(down)));
  }
  // Experts 2..25 held here: ids 0, 1 and 26+ belong to other ranks and leave their rows alone.
  const int first_id = 2;
  LocalExperts experts(mlps, kTopK, first_id);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t tokens : {1, 2, 5, 8, 16, 40}) {
    std::vector<float> x(tokens * kHidden);  // [T, H]
    for (float& v : x) v = u(rng);
    std::vector<int32_t> ids(tokens * kTopK);  // [T, K], distinct per token
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<int32_t> all(kExperts + 4);
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
      std::shuffle(all.begin(), all.end(), rng);
      // Few tokens per expert for small batches, many for 40 (the unthreaded path).
      std::copy_n(all.begin(), kTopK, ids.begin() + t * kTopK);
    }
    // The reference: each (token, slot) alone through its expert.
    const float kUntouched = -7.0f;
    std::vector<float> want(tokens * kTopK * kHidden, kUntouched);  // [T * K, H]
    for (int64_t i = 0; i < tokens * kTopK; ++i) {
      const int e = ids[i] - first_id;
      if (e < 0 || e >= kExperts) continue;
      mlps[e].forward(x.data() + (i / kTopK) * kHidden, 1, want.data() + i * kHidden);
    }
    for (int threads : {1, 2, 3}) {
      ThreadPool::set_global_threads(threads);
      ExpertScratch scratch;
      std::vector<float> got(want.size(), kUntouched);
      experts.forward_slots(x.data(), tokens, ids.data(), got.data(), scratch);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << tokens << " tokens, " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace epserve
