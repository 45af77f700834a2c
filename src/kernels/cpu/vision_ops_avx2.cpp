// AVX2 paths of the vision tower's elementwise kernels (vision_ops.h).
//  - GELU with the tanh approximation, written as x * sigmoid(2 z) (= x * 0.5 * (1 + tanh z)),
//    z = sqrt(2 / pi) * (x + 0.044715 x^3), with exp8's e^x: within a few ulp of the scalar
//    definition.
//  - LayerNorm rows: the sum and the centred sum of squares in double (four 4-lane sums each),
//    then every output with the scalar definition's fp32 operations (which the compiler may
//    fuse into one fma): within an ulp of the scalar definition.
//  - Bias and residual additions: the scalar definitions' additions, eight at a time.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/exp_avx2.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

inline __m256 gelu_tanh8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                 _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), z));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

inline double reduce4(__m256d a, __m256d b, __m256d c, __m256d d) {
  const __m256d s = _mm256_add_pd(_mm256_add_pd(a, b), _mm256_add_pd(c, d));
  double lanes[4];
  _mm256_storeu_pd(lanes, s);
  return (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
}

}  // namespace

void gelu_tanh_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu_tanh8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float v[8] = {};
    for (int64_t j = i; j < n; ++j) v[j - i] = x[j];
    _mm256_storeu_ps(v, gelu_tanh8(_mm256_loadu_ps(v)));
    for (int64_t j = i; j < n; ++j) x[j] = v[j - i];
  }
}

void layernorm_row_avx2(const float* x, const float* weight, const float* bias, int64_t dim,
                        double eps, float* out) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
    s2 = _mm256_add_pd(s2, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)));
    s3 = _mm256_add_pd(s3, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)));
  }
  double sum = reduce4(s0, s1, s2, s3);
  for (; i < dim; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(dim);
  const __m256d vmean = _mm256_set1_pd(mean);
  s0 = s1 = s2 = s3 = _mm256_setzero_pd();
  for (i = 0; i + 16 <= dim; i += 16) {
    const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), vmean);
    const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), vmean);
    const __m256d c = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), vmean);
    const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)), vmean);
    s0 = _mm256_fmadd_pd(a, a, s0);
    s1 = _mm256_fmadd_pd(b, b, s1);
    s2 = _mm256_fmadd_pd(c, c, s2);
    s3 = _mm256_fmadd_pd(d, d, s3);
  }
  double sq = reduce4(s0, s1, s2, s3);
  for (; i < dim; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
  const auto m = static_cast<float>(mean);
  const __m256 vm = _mm256_set1_ps(m), vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= dim; i += 8) {
    const __m256 centred = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vinv);
    const __m256 y = _mm256_add_ps(_mm256_mul_ps(centred, _mm256_loadu_ps(weight + i)),
                                   _mm256_loadu_ps(bias + i));
    _mm256_storeu_ps(out + i, y);
  }
  for (; i < dim; ++i) out[i] = (x[i] - m) * inv * weight[i] + bias[i];
}

void add_bias_rows_avx2(float* y, const float* bias, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * dim;
    int64_t i = 0;
    for (; i + 8 <= dim; i += 8) {
      _mm256_storeu_ps(yr + i, _mm256_add_ps(_mm256_loadu_ps(yr + i), _mm256_loadu_ps(bias + i)));
    }
    for (; i < dim; ++i) yr[i] += bias[i];
  }
}

void add_bias_residual_rows_avx2(float* x, const float* y, const float* bias, int64_t rows,
                                 int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * dim;
    const float* yr = y + r * dim;
    int64_t i = 0;
    for (; i + 8 <= dim; i += 8) {
      const __m256 delta = _mm256_add_ps(_mm256_loadu_ps(yr + i), _mm256_loadu_ps(bias + i));
      _mm256_storeu_ps(xr + i, _mm256_add_ps(_mm256_loadu_ps(xr + i), delta));
    }
    for (; i < dim; ++i) xr[i] += yr[i] + bias[i];
  }
}

}  // namespace epserve
