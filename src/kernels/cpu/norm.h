// RMSNorm as Hugging Face computes it in fp32: y = x * rsqrt(mean(x^2) + eps) * weight.
#pragma once

#include <cstdint>

namespace epserve {

// x and out are [rows, dim] with the given row strides; out may alias x. Uses AVX2 when the
// CPU has it; each row's result depends only on that row.
void rmsnorm(const float* x, int64_t x_stride, const float* weight, int64_t rows, int64_t dim,
             double eps, float* out, int64_t out_stride);
// The scalar definition the vector path is tested against (single-threaded).
void rmsnorm_reference(const float* x, int64_t x_stride, const float* weight, int64_t rows,
                       int64_t dim, double eps, float* out, int64_t out_stride);

inline void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
                    float* out) {
  rmsnorm(x, dim, weight, rows, dim, eps, out, dim);
}

}  // namespace epserve
