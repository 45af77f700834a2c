#include "kernels/cpu/norm.h"

#include <cmath>

#include "core/thread_pool.h"

namespace epserve {

void rmsnorm(const float* x, int64_t x_stride, const float* weight, int64_t rows, int64_t dim,
             double eps, float* out, int64_t out_stride) {
  ThreadPool::global().parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = x + r * x_stride;
          float* yr = out + r * out_stride;
          double sum = 0.0;
          for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
          float inv = static_cast<float>(1.0 / std::sqrt(sum / dim + eps));
          for (int64_t i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
        }
      },
      8);
}

}  // namespace epserve
