#include "ep/dispatch_layout.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "ep/dispatcher.h"

namespace epserve {
namespace {

TEST(DispatchLayout, MatchesBruteForce) {
  const int T = 300, K = 6, E = 24;
  for (int ranks : {1, 2, 3, 4, 6}) {
    std::mt19937 gen(ranks);
    std::vector<int32_t> topk(T * K);
    for (auto& e : topk) e = int32_t(gen() % (E + 1)) - 1;
    DispatchLayout l = get_dispatch_layout(topk.data(), T, K, E, ranks);
    const int per = E / ranks;
    for (int r = 0; r < ranks; ++r) {
      int64_t tokens = 0;
      for (int t = 0; t < T; ++t) {
        bool in = false;
        for (int k = 0; k < K; ++k) in |= topk[t * K + k] >= 0 && topk[t * K + k] / per == r;
        EXPECT_EQ(l.in_rank(t, r), in);
        tokens += in;
      }
      EXPECT_EQ(l.num_tokens_per_rank[r], tokens);
    }
    for (int e = 0; e < E; ++e) {
      EXPECT_EQ(l.num_tokens_per_expert[e], std::count(topk.begin(), topk.end(), e));
    }
  }
}

TEST(DispatchLayout, EmptyBatchAndErrors) {
  DispatchLayout l = get_dispatch_layout(nullptr, 0, 8, 256, 4);
  EXPECT_EQ(l.num_tokens_per_rank, std::vector<int64_t>(4, 0));
  std::vector<int32_t> bad = {0, 256};
  try {
    get_dispatch_layout(bad.data(), 1, 2, 256, 4);
    FAIL() << "id 256 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("topk_idx[0, 1] = 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(get_dispatch_layout(bad.data(), 1, 2, 255, 4), Error);  // 255 not divisible by 4
}

TEST(CombineReference, SumsInSlotOrderAndSkipsMissingSlots) {
  // Values where the summation order changes the rounding.
  const int K = 3;
  const int64_t H = 2;
  std::vector<float> y = {1e8f, 1.0f, 1.0f, 1.0f, -1e8f, 1.0f};  // [1, K, H]
  std::vector<float> w = {1.0f, 1.0f, 1.0f};
  std::vector<int32_t> idx = {5, 6, 7};
  std::vector<float> out(H);
  combine_reference(y.data(), idx.data(), w.data(), 1, K, H, out.data());
  EXPECT_EQ(out[0], (1e8f + 1.0f) + -1e8f);  // 0: the 1 is lost, as in slot order
  EXPECT_EQ(out[1], 3.0f);
  idx[1] = -1;
  combine_reference(y.data(), idx.data(), w.data(), 1, K, H, out.data());
  EXPECT_EQ(out[1], 2.0f);
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

TEST(CombineReference, VectorPathMatchesScalarBits) {
  // Inputs where a fused multiply-add would round differently from multiply-then-add.
  const int K = 8;
  const int64_t H = 7168 + 5;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  std::vector<std::vector<float>> rows(K, std::vector<float>(H));
  for (auto& r : rows)
    for (auto& v : r) v = dist(gen) * 1.0000001f;
  std::vector<const float*> ptrs;
  for (auto& r : rows) ptrs.push_back(r.data());
  ptrs[3] = nullptr;
  std::vector<float> w(K);
  for (auto& v : w) v = dist(gen) / 3.0f;
  std::vector<float> fast(H), slow(H);
  weighted_sum_row(ptrs.data(), w.data(), K, H, fast.data());
  weighted_sum_row_scalar(ptrs.data(), w.data(), K, H, slow.data());
  EXPECT_EQ(std::memcmp(fast.data(), slow.data(), H * 4), 0);
}

}  // namespace
}  // namespace epserve
