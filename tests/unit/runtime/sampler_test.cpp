#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "runtime/slot_allocator.h"

namespace epserve {
namespace {

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p, 1);
  std::vector<float> logits = {0.1f, 3.0f, 3.0f, -1.0f};
  EXPECT_EQ(s.sample(logits.data(), 4, {}, {}), 1);
}

TEST(Sampler, SameSeedSameTokensAndTheDistributionIsRespected) {
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler a(p, 42), b(p, 42);
  std::map<int, int> counts;
  for (int i = 0; i < 20000; ++i) {
    std::vector<float> l1 = base, l2 = base;
    int32_t x = a.sample(l1.data(), 3, {}, {});
    EXPECT_EQ(x, b.sample(l2.data(), 3, {}, {}));
    ++counts[x];
  }
  EXPECT_NEAR(counts[0] / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(counts[1] / 20000.0, 0.3, 0.02);
  EXPECT_NEAR(counts[2] / 20000.0, 0.2, 0.02);
}

TEST(Sampler, TopKTopPAndMinPCutTheTail) {
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  for (int variant = 0; variant < 3; ++variant) {
    SamplingParams p;
    if (variant == 0) p.top_k = 2;
    if (variant == 1) p.top_p = 0.75f;  // 0.5 + 0.3 reaches it
    if (variant == 2) p.min_p = 0.5f;   // keeps probabilities >= 0.25
    Sampler s(p, 7);
    for (int i = 0; i < 2000; ++i) {
      std::vector<float> l = base;
      EXPECT_LT(s.sample(l.data(), 4, {}, {}), 2) << variant;
    }
  }
}

TEST(Sampler, LogitBiasAndPenalties) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logit_bias[3] = 100.0f;
  Sampler s(p, 0);
  std::vector<float> l = {5.0f, 1.0f, 1.0f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 4, {}, {}), 3);

  SamplingParams q;
  q.temperature = 0.0f;
  q.frequency_penalty = 1.0f;
  Sampler t(q, 0);
  std::vector<float> m = {5.0f, 4.5f};
  EXPECT_EQ(t.sample(m.data(), 2, {}, {0}), 1);  // token 0 was generated once: 5 - 1 < 4.5
}

TEST(SlotAllocator, PagesAreReservedReleasedAndMapped) {
  SlotAllocator a(64, 16);
  EXPECT_EQ(a.num_pages(), 4);
  std::vector<int32_t> pages;
  ASSERT_TRUE(a.reserve(pages, 20));
  EXPECT_EQ(pages.size(), 2u);
  std::vector<int32_t> slots = a.slots(pages, 20);
  EXPECT_EQ(slots[0], pages[0] * 16);
  EXPECT_EQ(slots[17], pages[1] * 16 + 1);
  std::vector<int32_t> other;
  EXPECT_FALSE(a.reserve(other, 40));  // 3 pages wanted, 2 free
  EXPECT_TRUE(other.empty());
  a.release(pages);
  EXPECT_EQ(a.num_free_pages(), 4);
  EXPECT_TRUE(a.reserve(other, 64));
}

}  // namespace
}  // namespace epserve
