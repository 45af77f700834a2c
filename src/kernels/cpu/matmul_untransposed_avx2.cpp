// AVX2 + FMA matmul_untransposed: y[T, K] = x[T, N] · W[N, K] in register tiles of up to four
// tokens by up to eight vectors of eight output columns; each output is one fma chain over N in
// order, as the scalar definition computes it.
#include <immintrin.h>

#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

// Lanes l < count all ones, the others zero.
inline __m256i tail_mask(int64_t count) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes);
}

// Columns [k0, k0 + 8 * KV) of TT tokens; a partial last vector holds `tail` (< 8) columns.
template <int TT, int KV, typename W>
inline void untransposed_tile(const float* x, int64_t x_stride, const W* w, int64_t row_stride,
                              int64_t rows, int64_t k0, int64_t tail, float* y, int64_t y_stride) {
  // Every loop over the tile fully unrolled, so that acc stays in registers (without the
  // pragmas GCC 12 keeps it on the stack and stores it back on every row: ~4x slower).
  __m256 acc[TT][KV];
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < KV; ++j) acc[t][j] = _mm256_setzero_ps();
  for (int64_t n = 0; n < rows; ++n) {
    const W* wr = w + n * row_stride + k0;
    __m256 wv[KV];
#pragma GCC unroll 8
    for (int j = 0; j < KV; ++j) {
      wv[j] = tail && j == KV - 1 ? load_tail(wr + 8 * j, tail) : load8(wr + 8 * j);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      __m256 xv = _mm256_broadcast_ss(x + t * x_stride + n);
#pragma GCC unroll 8
      for (int j = 0; j < KV; ++j) acc[t][j] = _mm256_fmadd_ps(xv, wv[j], acc[t][j]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t) {
    float* yt = y + t * y_stride + k0;
#pragma GCC unroll 8
    for (int j = 0; j < KV; ++j) {
      if (tail && j == KV - 1) {
        _mm256_maskstore_ps(yt + 8 * j, tail_mask(tail), acc[t][j]);
      } else {
        _mm256_storeu_ps(yt + 8 * j, acc[t][j]);
      }
    }
  }
}

template <int TT, int KV, typename W>
void untransposed_tokens(const float* x, int64_t x_stride, const WeightView& w, float* y,
                         int64_t y_stride) {
  const W* data = static_cast<const W*>(w.data);
  int64_t k = 0;
  for (; k + 8 * KV <= w.cols; k += 8 * KV) {
    untransposed_tile<TT, KV>(x, x_stride, data, w.row_stride, w.rows, k, 0, y, y_stride);
  }
  for (; k + 8 <= w.cols; k += 8) {
    untransposed_tile<TT, 1>(x, x_stride, data, w.row_stride, w.rows, k, 0, y, y_stride);
  }
  if (k < w.cols) {
    untransposed_tile<TT, 1>(x, x_stride, data, w.row_stride, w.rows, k, w.cols - k, y, y_stride);
  }
}

template <typename W>
void untransposed(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                  float* y, int64_t y_stride) {
  int64_t t = 0;
  for (; t + 4 <= num_tokens; t += 4) {
    untransposed_tokens<4, 3, W>(x + t * x_stride, x_stride, w, y + t * y_stride, y_stride);
  }
  const float* xt = x + t * x_stride;
  float* yt = y + t * y_stride;
  switch (num_tokens - t) {
    case 3:
      untransposed_tokens<3, 4, W>(xt, x_stride, w, yt, y_stride);
      break;
    case 2:
      untransposed_tokens<2, 4, W>(xt, x_stride, w, yt, y_stride);
      break;
    case 1:
      untransposed_tokens<1, 8, W>(xt, x_stride, w, yt, y_stride);
      break;
    default:
      break;
  }
}

}  // namespace

void untransposed_avx2(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                       float* y, int64_t y_stride) {
  if (num_tokens <= 0 || w.cols <= 0) return;
  if (w.dtype == DType::BF16) {
    untransposed<bf16_t>(x, x_stride, num_tokens, w, y, y_stride);
  } else {
    untransposed<float>(x, x_stride, num_tokens, w, y, y_stride);
  }
}

}  // namespace epserve::matmul_detail
