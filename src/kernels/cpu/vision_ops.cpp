#include "kernels/cpu/vision_ops.h"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

void layernorm_row_scalar(const float* in, const float* weight, const float* bias, int64_t dim,
                          double eps, float* o) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i) sum += in[i];
  const double mean = sum / static_cast<double>(dim);
  double sq = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    const double d = in[i] - mean;
    sq += d * d;
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
  const auto m = static_cast<float>(mean);
  for (int64_t i = 0; i < dim; ++i) o[i] = (in[i] - m) * inv * weight[i] + bias[i];
}

// Rows per chunk so that a chunk is worth a thread wake-up (~16K floats).
int64_t min_rows(int64_t dim) {
  return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, dim));
}

}  // namespace

void layernorm_reference(const float* x, const float* weight, const float* bias, int64_t rows,
                         int64_t dim, double eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    layernorm_row_scalar(x + r * dim, weight, bias, dim, eps, out + r * dim);
  }
}

void layernorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out) {
  auto row = cpu_has_avx2_fma() ? layernorm_row_avx2 : layernorm_row_scalar;
  ThreadPool::global().parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) row(x + r * dim, weight, bias, dim, eps, out + r * dim);
      },
      min_rows(dim));
}

void gelu_tanh(float* x, int64_t n) {
  auto kernel = cpu_has_avx2_fma() ? gelu_tanh_avx2 : gelu_tanh_reference;
  // Chunks of whole vectors: each element's result does not depend on its chunk.
  constexpr int64_t kVector = 8;
  const int64_t vectors = (n + kVector - 1) / kVector;
  ThreadPool::global().parallel_for(
      vectors,
      [&](int64_t v0, int64_t v1) {
        kernel(x + v0 * kVector, std::min(n, v1 * kVector) - v0 * kVector);
      },
      (int64_t{1} << 14) / kVector);
}

void gelu_tanh_reference(float* x, int64_t n) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kAlpha * (v + 0.044715f * v * v * v)));
  }
}

void gelu_erf(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void add_bias_reference(float* y, const float* bias, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] += bias[i];
  }
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t dim) {
  auto kernel = cpu_has_avx2_fma() ? add_bias_rows_avx2 : add_bias_reference;
  ThreadPool::global().parallel_for(
      rows, [&](int64_t r0, int64_t r1) { kernel(y + r0 * dim, bias, r1 - r0, dim); },
      min_rows(dim));
}

void add_bias_residual_reference(float* x, const float* y, const float* bias, int64_t rows,
                                 int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) x[r * dim + i] += y[r * dim + i] + bias[i];
  }
}

void add_bias_residual(float* x, const float* y, const float* bias, int64_t rows, int64_t dim) {
  auto kernel = cpu_has_avx2_fma() ? add_bias_residual_rows_avx2 : add_bias_residual_reference;
  ThreadPool::global().parallel_for(
      rows, [&](int64_t r0, int64_t r1) { kernel(x + r0 * dim, y + r0 * dim, bias, r1 - r0, dim); },
      min_rows(dim));
}

}  // namespace epserve
