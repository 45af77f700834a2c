#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

double silu_mul_exact(float g, float u) {
  return static_cast<double>(g) / (1.0 + std::exp(-static_cast<double>(g))) * u;
}

// Both paths against silu computed in double: within 6e-7 relative (about 5 fp32 ulp: exp's
// polynomial, the sum, the division and the product), or 1e-30 absolute for tiny results.
TEST(SiluMul, MatchesDoublePrecisionDefinition) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> wide(-30.0f, 30.0f), narrow(-4.0f, 4.0f);
  std::vector<float> gate, up;
  for (int i = 0; i < 5003; ++i) {
    gate.push_back(i % 2 ? wide(rng) : narrow(rng));
    up.push_back(narrow(rng));
  }
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 95.0f, -95.0f, 200.0f, -200.0f}) {
    gate.push_back(g);
    up.push_back(1.5f);
  }
  int64_t n = static_cast<int64_t>(gate.size());
  std::vector<float> ref(n), fast(n);
  silu_mul_reference(gate.data(), up.data(), n, ref.data());
  silu_mul(gate.data(), up.data(), n, fast.data());
  for (int64_t i = 0; i < n; ++i) {
    double exact = silu_mul_exact(gate[i], up[i]);
    double bound = 6e-7 * std::fabs(exact) + 1e-30;
    EXPECT_LE(std::fabs(ref[i] - exact), bound) << "reference, gate=" << gate[i];
    EXPECT_LE(std::fabs(fast[i] - exact), bound) << "silu_mul, gate=" << gate[i];
  }
}

TEST(SiluMul, TailsAndAliasing) {
  for (int64_t n : {1, 7, 8, 9, 17}) {
    std::vector<float> gate(n), up(n), out(n);
    for (int64_t i = 0; i < n; ++i) {
      gate[i] = 0.5f * i - 2.0f;
      up[i] = 1.0f + i;
    }
    silu_mul(gate.data(), up.data(), n, out.data());
    std::vector<float> in_place = gate;
    silu_mul(in_place.data(), up.data(), n, in_place.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(out[i], silu_mul_exact(gate[i], up[i]), 1e-6 * std::fabs(out[i]) + 1e-30);
      EXPECT_EQ(std::memcmp(&out[i], &in_place[i], sizeof(float)), 0) << n << " " << i;
    }
  }
}

TEST(SiluMul, NanPropagates) {
  float g = std::nanf(""), u = 1.0f, out = 0.0f;
  silu_mul(&g, &u, 1, &out);
  EXPECT_TRUE(std::isnan(out));
}

// The vector path sums squares in double in another order than the scalar one; the inverse
// rms is rounded to fp32 either way, so outputs agree within 2 ulp.
TEST(RmsNorm, VectorPathMatchesReference) {
  std::mt19937 rng(8);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int64_t dim : {1, 5, 16, 31, 128, 7168}) {
    const int64_t rows = 5, stride = dim + 3;
    std::vector<float> x(rows * stride), weight(dim);
    for (auto& v : x) v = dist(rng);
    for (auto& v : weight) v = 1.0f + 0.1f * dist(rng);
    std::vector<float> ref(rows * dim), fast(rows * dim);
    rmsnorm_reference(x.data(), stride, weight.data(), rows, dim, 1e-6, ref.data(), dim);
    rmsnorm(x.data(), stride, weight.data(), rows, dim, 1e-6, fast.data(), dim);
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int64_t i = 0; i < dim; ++i)
        sum += static_cast<double>(x[r * stride + i]) * x[r * stride + i];
      double inv = 1.0 / std::sqrt(sum / dim + 1e-6);
      for (int64_t i = 0; i < dim; ++i) {
        double exact = weight[i] * (x[r * stride + i] * inv);
        double bound = 2.5e-7 * std::fabs(exact) + 1e-30;
        ASSERT_LE(std::fabs(fast[r * dim + i] - exact), bound) << "dim " << dim << " i " << i;
        ASSERT_LE(std::fabs(ref[r * dim + i] - exact), bound) << "dim " << dim << " i " << i;
      }
    }
  }
}

TEST(RmsNorm, InPlaceGivesSameBits) {
  const int64_t rows = 3, dim = 77;
  std::vector<float> x(rows * dim), weight(dim, 0.5f), out(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) x[i] = std::sin(0.1f * i);
  rmsnorm(x.data(), weight.data(), rows, dim, 1e-5, out.data());
  rmsnorm(x.data(), weight.data(), rows, dim, 1e-5, x.data());
  EXPECT_EQ(std::memcmp(x.data(), out.data(), x.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace epserve
