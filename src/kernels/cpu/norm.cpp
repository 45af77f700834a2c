#include "kernels/cpu/norm.h"

#include <cmath>

#include "core/thread_pool.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

void rmsnorm_row_scalar(const float* xr, const float* weight, int64_t dim, double eps, float* yr) {
  double sum = 0.0;
  for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
  float inv = static_cast<float>(1.0 / std::sqrt(sum / dim + eps));
  for (int64_t i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
}

}  // namespace

void rmsnorm_reference(const float* x, int64_t x_stride, const float* weight, int64_t rows,
                       int64_t dim, double eps, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    rmsnorm_row_scalar(x + r * x_stride, weight, dim, eps, out + r * out_stride);
  }
}

void rmsnorm(const float* x, int64_t x_stride, const float* weight, int64_t rows, int64_t dim,
             double eps, float* out, int64_t out_stride) {
  auto row = cpu_has_avx2_fma() ? rmsnorm_row_avx2 : rmsnorm_row_scalar;
  ThreadPool::global().parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          row(x + r * x_stride, weight, dim, eps, out + r * out_stride);
        }
      },
      8);
}

}  // namespace epserve
