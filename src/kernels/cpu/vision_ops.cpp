#include "kernels/cpu/vision_ops.h"

#include <cmath>

namespace epserve {

void layernorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * dim;
    float* o = out + r * dim;
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
}

void gelu_tanh(float* x, int64_t n) {
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

void add_bias(float* y, const float* bias, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] += bias[i];
  }
}

}  // namespace epserve
