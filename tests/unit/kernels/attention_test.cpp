#include "kernels/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace epserve {
namespace {

// Naive causal attention in double for one (query, head) over a contiguous key list.
std::vector<double> naive(const float* q, const std::vector<const float*>& keys,
                          const std::vector<const float*>& values, int dim, int vdim,
                          double scale) {
  std::vector<double> s(keys.size());
  double m = -1e300;
  for (size_t j = 0; j < keys.size(); ++j) {
    double d = 0;
    for (int i = 0; i < dim; ++i) d += double(q[i]) * keys[j][i];
    s[j] = d * scale;
    m = std::max(m, s[j]);
  }
  double z = 0;
  for (auto& v : s) z += (v = std::exp(v - m));
  std::vector<double> out(vdim, 0.0);
  for (size_t j = 0; j < keys.size(); ++j) {
    for (int i = 0; i < vdim; ++i) out[i] += s[j] / z * values[j][i];
  }
  return out;
}

TEST(Attention, GqaMatchesNaiveWithScatteredSlots) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int heads = 4, kv_heads = 2, hd = 8, past = 5, fresh = 3, slots_total = 20;
  std::vector<float> k(slots_total * kv_heads * hd), v(k.size()), q(fresh * heads * hd);
  for (auto* buf : {&k, &v, &q}) {
    for (auto& x : *buf) x = normal(rng);
  }
  std::vector<int32_t> slots = {7, 2, 19, 4, 11, 0, 15, 9};  // past + fresh, scattered
  std::vector<float> out(fresh * heads * hd);
  attention_gqa(q.data(), SeqSlots{slots.data(), past, fresh}, heads, kv_heads, hd, k.data(),
                v.data(), kv_heads * hd, 0.3f, out.data());
  for (int i = 0; i < fresh; ++i) {
    for (int h = 0; h < heads; ++h) {
      int kvh = h / (heads / kv_heads);
      std::vector<const float*> keys, values;
      for (int s = 0; s <= past + i; ++s) {
        keys.push_back(k.data() + (slots[s] * kv_heads + kvh) * hd);
        values.push_back(v.data() + (slots[s] * kv_heads + kvh) * hd);
      }
      auto ref = naive(q.data() + (i * heads + h) * hd, keys, values, hd, hd, 0.3);
      for (int d = 0; d < hd; ++d) EXPECT_NEAR(out[(i * heads + h) * hd + d], ref[d], 1e-5);
    }
  }
}

TEST(Attention, MlaMatchesNaiveOverLatentAndRope) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  const int heads = 3, lora = 8, rope = 4, past = 2, fresh = 2, row = lora + rope;
  std::vector<float> cache(10 * row), ql(fresh * heads * lora), qr(fresh * heads * rope);
  for (auto* buf : {&cache, &ql, &qr}) {
    for (auto& x : *buf) x = normal(rng);
  }
  std::vector<int32_t> slots = {3, 8, 1, 6};
  std::vector<float> out(fresh * heads * lora);
  attention_mla(ql.data(), qr.data(), SeqSlots{slots.data(), past, fresh}, heads, lora, rope,
                cache.data(), 0.5f, out.data());
  for (int i = 0; i < fresh; ++i) {
    for (int h = 0; h < heads; ++h) {
      // The query is [q_latent, q_rope]; keys are whole cache rows, values their latent part.
      std::vector<float> q(row);
      std::copy_n(ql.data() + (i * heads + h) * lora, lora, q.begin());
      std::copy_n(qr.data() + (i * heads + h) * rope, rope, q.begin() + lora);
      std::vector<const float*> keys;
      for (int s = 0; s <= past + i; ++s) keys.push_back(cache.data() + slots[s] * row);
      auto ref = naive(q.data(), keys, keys, row, lora, 0.5);
      for (int d = 0; d < lora; ++d) EXPECT_NEAR(out[(i * heads + h) * lora + d], ref[d], 1e-5);
    }
  }
}

}  // namespace
}  // namespace epserve
