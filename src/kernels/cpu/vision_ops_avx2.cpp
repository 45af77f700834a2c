// AVX2 GELU with the tanh approximation, written as x * sigmoid(2 z) (= x * 0.5 * (1 + tanh z)),
// z = sqrt(2 / pi) * (x + 0.044715 x^3), with exp8's e^x: within a few ulp of the scalar
// definition.
#include <immintrin.h>

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

}  // namespace epserve
