// AVX2 rmsnorm row: squares summed in double (four 4-lane sums), the scaling in fp32 with the
// same operations as the scalar definition.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/norm.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {

void rmsnorm_row_avx2(const float* x, const float* weight, int64_t dim, double eps, float* out) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    __m256d c = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8));
    __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
    s0 = _mm256_fmadd_pd(a, a, s0);
    s1 = _mm256_fmadd_pd(b, b, s1);
    s2 = _mm256_fmadd_pd(c, c, s2);
    s3 = _mm256_fmadd_pd(d, d, s3);
  }
  __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
  double lanes[4];
  _mm256_storeu_pd(lanes, s);
  double sum = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
  for (; i < dim; ++i) sum += static_cast<double>(x[i]) * x[i];
  float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(dim) + eps));
  __m256 vinv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= dim; i += 8) {
    __m256 y =
        _mm256_mul_ps(_mm256_loadu_ps(weight + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    _mm256_storeu_ps(out + i, y);
  }
  for (; i < dim; ++i) out[i] = weight[i] * (x[i] * inv);
}

}  // namespace epserve
