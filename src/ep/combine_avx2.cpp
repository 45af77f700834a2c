// AVX2 path of weighted_sum_row (dispatcher.cpp). Each element gets the same two IEEE operations
// as the scalar path, in the same order (multiply, round; add, round), so results are
// bit-identical; contraction into FMA is switched off for that reason.
#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>

#include <cstdint>

namespace epserve {

void weighted_sum_row_avx2(const float* const* rows, const float* weights, int num_topk,
                           int64_t hidden, float* out) {
  int64_t h = 0;
  for (; h + 16 <= hidden; h += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int k = 0; k < num_topk; ++k) {
      if (!rows[k]) continue;
      __m256 w = _mm256_set1_ps(weights[k]);
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(w, _mm256_loadu_ps(rows[k] + h)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(w, _mm256_loadu_ps(rows[k] + h + 8)));
    }
    _mm256_storeu_ps(out + h, a0);
    _mm256_storeu_ps(out + h + 8, a1);
  }
  for (; h < hidden; ++h) {
    float acc = 0.0f;
    for (int k = 0; k < num_topk; ++k) {
      if (rows[k]) acc = acc + weights[k] * rows[k][h];
    }
    out[h] = acc;
  }
}

}  // namespace epserve
