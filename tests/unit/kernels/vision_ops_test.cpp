// The vision tower's kernels against their definitions in double precision, their run-time
// (vector, threaded) paths against their scalar references, and the rotary by angles against
// plain RoPE (equal angles: the same bits) and MRoPE's interleaved axis choice.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/vision_ops.h"

namespace epserve {
namespace {

std::vector<float> ramp(int64_t n, float scale) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.7f * static_cast<float>(i) + 0.3f);
  return v;
}

TEST(VisionOps, LayerNormMatchesDefinition) {
  const int64_t rows = 3, dim = 40;
  auto x = ramp(rows * dim, 3.0f), w = ramp(dim, 1.0f), b = ramp(dim, 0.5f);
  std::vector<float> out(rows * dim);
  layernorm_reference(x.data(), w.data(), b.data(), rows, dim, 1e-6, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; ++i) mean += x[r * dim + i] / static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i) var += std::pow(x[r * dim + i] - mean, 2) / dim;
    for (int64_t i = 0; i < dim; ++i) {
      double expect = (x[r * dim + i] - mean) / std::sqrt(var + 1e-6) * w[i] + b[i];
      EXPECT_NEAR(out[r * dim + i], expect, 1e-5) << r << " " << i;
    }
  }
}

TEST(VisionOps, LayerNormVectorPathMatchesReference) {
  // 1152 is the ViT's width, 4 * 1152 the merger's; 45 leaves tails in both loops. Rows with a
  // large common offset make the centring matter.
  for (int64_t dim : {int64_t{45}, int64_t{1152}, int64_t{4608}}) {
    const int64_t rows = 37;
    auto x = ramp(rows * dim, 3.0f), w = ramp(dim, 1.0f), b = ramp(dim, 0.5f);
    for (int64_t i = 0; i < dim; ++i) x[i] += 100.0f;
    std::vector<float> fast(rows * dim), ref(rows * dim);
    layernorm(x.data(), w.data(), b.data(), rows, dim, 1e-6, fast.data());
    layernorm_reference(x.data(), w.data(), b.data(), rows, dim, 1e-6, ref.data());
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_NEAR(fast[i], ref[i], 1e-6f * (1.0f + std::fabs(ref[i]))) << "dim " << dim << " " << i;
    }
  }
}

TEST(VisionOps, BiasAdditionsMatchReferences) {
  const int64_t rows = 29, dim = 1155;  // a tail of 3 past the last full vector
  auto y = ramp(rows * dim, 2.0f), bias = ramp(dim, 0.7f), x = ramp(rows * dim, 5.0f);
  for (float& v : x) v = v * 1.37f + 0.5f;
  auto fast = y, ref = y;
  add_bias(fast.data(), bias.data(), rows, dim);
  add_bias_reference(ref.data(), bias.data(), rows, dim);
  EXPECT_EQ(fast, ref);
  auto xf = x, xr = x, x_two_steps = x;
  add_bias_residual(xf.data(), y.data(), bias.data(), rows, dim);
  add_bias_residual_reference(xr.data(), y.data(), bias.data(), rows, dim);
  EXPECT_EQ(xf, xr);
  for (size_t i = 0; i < x.size(); ++i) x_two_steps[i] += ref[i];  // add_bias, then the residual
  EXPECT_EQ(xr, x_two_steps);
}

TEST(VisionOps, GeluTanhGivesTheSameBitsOnOneAndTwoThreads) {
  auto x = ramp(3 * 4304 + 5, 6.0f);
  auto one = x, two = x;
  ThreadPool::set_global_threads(1);
  gelu_tanh(one.data(), static_cast<int64_t>(one.size()));
  ThreadPool::set_global_threads(2);
  gelu_tanh(two.data(), static_cast<int64_t>(two.size()));
  ThreadPool::set_global_threads(available_cores());
  EXPECT_EQ(one, two);
}

TEST(VisionOps, GeluVariantsMatchDefinitions) {
  auto x = ramp(64, 4.0f);
  auto tanh_x = x, erf_x = x;
  gelu_tanh_reference(tanh_x.data(), 64);
  gelu_erf(erf_x.data(), 64);
  for (int i = 0; i < 64; ++i) {
    double v = x[i];
    double t = 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    double e = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    EXPECT_NEAR(tanh_x[i], t, 1e-5);
    EXPECT_NEAR(erf_x[i], e, 1e-5);
  }
  EXPECT_NE(tanh_x, erf_x);  // the two approximations differ
}

TEST(VisionOps, GeluTanhVectorPathMatchesReference) {
  auto x = ramp(1003, 9.0f);  // a tail of 3 past the last full vector
  x[5] = -90.0f;              // exp's clamp
  x[6] = 90.0f;
  auto fast = x, ref = x;
  gelu_tanh(fast.data(), static_cast<int64_t>(x.size()));
  gelu_tanh_reference(ref.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(fast[i], ref[i], 2e-6f * (1.0f + std::fabs(ref[i]))) << i << " x=" << x[i];
  }
}

TEST(VisionOps, RopeByEqualAnglesIsPlainRope) {
  const int hd = 32;
  RopeTable table = make_rope_table(RopeParams{}, hd);
  auto a = ramp(2 * hd, 1.0f), b = a;
  apply_rope(table, 37, a.data(), 2, hd);
  const int32_t thw[3] = {37, 37, 37};
  const int section[3] = {6, 5, 5};
  std::vector<float> angle(hd / 2);
  mrope_interleaved_angles(table, thw, section, angle.data());
  apply_rope_angles(angle.data(), hd / 2, b.data(), 2, hd);
  EXPECT_EQ(a, b);
}

TEST(VisionOps, MropeInterleavesAxes) {
  RopeTable table = make_rope_table(RopeParams{}, 32);
  const int32_t thw[3] = {1, 2, 3};
  const int section[3] = {6, 5, 5};
  std::vector<float> angle(16);
  mrope_interleaved_angles(table, thw, section, angle.data());
  // i % 3 == 1 below 15: h; i % 3 == 2 below 15: w; the rest (and i = 15) t.
  const int expect[16] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(angle[i], expect[i] * table.inv_freq[i]) << i;
}

}  // namespace
}  // namespace epserve
