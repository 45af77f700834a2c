#include "kernels/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/attention_internal.h"

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

// Tolerances against double precision: the fp32 dot products, the polynomial exp and the fp32
// weighted sums of these small problems stay within 1e-5 of the exact result.
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

using attention_detail::AttentionPath;
using attention_detail::AttentionProblem;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> random_floats(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// An MLA-shaped problem (two query parts, keys = values = latent rows) or a GQA-shaped one.
struct Problem {
  int64_t heads, groups, dim1, dim2, vdim, row, total;
  std::vector<float> q1, q2, keys, values;
  std::vector<int32_t> slots;

  Problem(int64_t heads, int64_t groups, int64_t dim1, int64_t dim2, int64_t total, bool mla,
          std::mt19937& rng)
      : heads(heads), groups(groups), dim1(dim1), dim2(dim2), total(total) {
    vdim = mla ? dim1 : dim1;
    row = mla ? dim1 + dim2 : groups * dim1 + 3;  // GQA rows padded: stride > width
    q1 = random_floats(total * heads * dim1, rng);
    q2 = random_floats(total * heads * std::max<int64_t>(dim2, 1), rng);
    keys = random_floats((total + 7) * row, rng);
    values = mla ? keys : random_floats((total + 7) * row, rng);
    for (int64_t s = 0; s < total; ++s)
      slots.push_back(static_cast<int32_t>((s * 5 + 3) % (total + 7)));
  }

  // Runs tokens [past, past + fresh) of the sequence; returns out [fresh, heads, vdim].
  std::vector<float> run(int64_t past, int64_t fresh, AttentionPath path, bool parallel) const {
    std::vector<float> out(fresh * heads * vdim, -7.0f);
    AttentionProblem pb{.seq = SeqSlots{slots.data(), past, fresh},
                        .num_kv_groups = groups,
                        .heads_per_group = heads / groups,
                        .q1 = {q1.data() + past * heads * dim1, heads * dim1, dim1},
                        .q2 = {q2.data() + past * heads * std::max<int64_t>(dim2, 1),
                               heads * std::max<int64_t>(dim2, 1), std::max<int64_t>(dim2, 1)},
                        .dim1 = dim1,
                        .dim2 = dim2,
                        .keys = keys.data(),
                        .values = values.data(),
                        .group_offset = dim2 > 0 ? 0 : dim1,
                        .row_stride = row,
                        .value_dim = vdim,
                        .scale = 0.125f,
                        .out = {out.data(), heads * vdim, vdim}};
    attention_detail::run_attention(pb, path, parallel);
    return out;
  }
};

std::vector<AttentionPath> paths() {
  std::vector<AttentionPath> p = {AttentionPath::kScalar};
  if (attention_detail::avx2_available()) p.push_back(AttentionPath::kAvx2);
  return p;
}

// The vector path gives the scalar definition's bits, for shapes with partial tiles and blocks
// (heads not a multiple of 4, dimensions not a multiple of 8, lengths not a multiple of 3).
TEST(Attention, VectorPathGivesTheBitsOfTheScalarDefinition) {
  if (!attention_detail::avx2_available()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(11);
  struct Shape {
    int64_t heads, groups, dim1, dim2, total;
    bool mla;
  };
  for (Shape sh : {Shape{16, 1, 32, 8, 40, true}, Shape{3, 1, 13, 5, 9, true},
                   Shape{7, 1, 64, 0, 30, true}, Shape{8, 2, 16, 0, 27, false},
                   Shape{6, 3, 12, 0, 11, false}, Shape{1, 1, 5, 0, 4, false}}) {
    Problem p(sh.heads, sh.groups, sh.dim1, sh.dim2, sh.total, sh.mla, rng);
    auto scalar = p.run(0, sh.total, AttentionPath::kScalar, false);
    auto vec = p.run(0, sh.total, AttentionPath::kAvx2, false);
    EXPECT_TRUE(same_bits(scalar, vec)) << sh.heads << " heads, dims " << sh.dim1 << "+" << sh.dim2;
  }
}

// Long contexts: the vector path walks keys in chunks (scores and weighted sums stay in cache)
// and still gives the scalar bits; the last tokens alone give the same bits as in a chunk.
// Value widths 44 and 20 end in a masked partial vector, which is also carried across chunks.
TEST(Attention, LongContextKeepsTheBits) {
  std::mt19937 rng(13);
  for (bool mla : {true, false}) {
    Problem p(mla ? 14 : 4, mla ? 1 : 2, mla ? 44 : 20, mla ? 8 : 0, 301, mla, rng);
    const int64_t width = p.heads * p.vdim;
    auto scalar = p.run(297, 4, AttentionPath::kScalar, false);
    for (AttentionPath path : paths()) {
      auto chunk = p.run(297, 4, path, true);
      EXPECT_TRUE(same_bits(scalar, chunk)) << (mla ? "mla" : "gqa");
      auto last = p.run(300, 1, path, true);
      EXPECT_EQ(std::memcmp(last.data(), chunk.data() + 3 * width, width * sizeof(float)), 0);
    }
  }
}

// A token's result is the same whether it comes in a prefill of many tokens, a chunk, or a decode
// step of one token, with one thread or several, on every path.
TEST(Attention, ResultOfATokenDependsOnlyOnItsPositionAndCache) {
  std::mt19937 rng(12);
  const int64_t total = 37;
  for (bool mla : {true, false}) {
    Problem p(mla ? 16 : 8, mla ? 1 : 2, mla ? 48 : 24, mla ? 16 : 0, total, mla, rng);
    const int64_t width = p.heads * p.vdim;
    for (AttentionPath path : paths()) {
      ThreadPool::set_global_threads(2);
      auto prefill = p.run(0, total, path, true);
      // Chunks of 5 tokens after a prefix, then decode steps, one thread.
      ThreadPool::set_global_threads(1);
      std::vector<float> pieces;
      for (int64_t t = 0; t < total;) {
        int64_t n = t < 20 ? std::min<int64_t>(5, 20 - t) : 1;
        auto out = p.run(t, n, path, true);
        pieces.insert(pieces.end(), out.begin(), out.end());
        t += n;
      }
      EXPECT_TRUE(same_bits(prefill, pieces)) << (mla ? "mla" : "gqa");
      ThreadPool::set_global_threads(3);
      auto three = p.run(0, total, path, true);
      EXPECT_TRUE(same_bits(prefill, three)) << (mla ? "mla" : "gqa");
      for (int64_t i = 0; i < total; ++i) {
        auto step = p.run(i, 1, path, false);
        EXPECT_EQ(std::memcmp(step.data(), prefill.data() + i * width, width * sizeof(float)), 0)
            << "token " << i;
      }
    }
  }
  ThreadPool::set_global_threads(available_cores());
}

// The polynomial exponential within 2 ulp of std::exp over the range softmax uses.
TEST(Attention, SoftmaxExpIsWithinTwoUlp) {
  for (float x = -87.0f; x <= 0.0f; x += 0.00731f) {
    float e = attention_detail::softmax_exp(x);
    float ref = static_cast<float>(std::exp(static_cast<double>(x)));
    EXPECT_LE(std::fabs(e - ref), 2.0f * (std::nextafter(ref, 1e30f) - ref)) << x;
  }
  EXPECT_EQ(attention_detail::softmax_exp(0.0f), 1.0f);
  EXPECT_EQ(attention_detail::softmax_exp(-0.0f), 1.0f);
}

}  // namespace
}  // namespace epserve
