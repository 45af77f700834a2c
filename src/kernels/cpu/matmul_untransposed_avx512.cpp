// AVX-512 matmul_untransposed for F32 weights: y[T, K] = x[T, N] · W[N, K] in register tiles of
// up to four tokens by up to four vectors of sixteen output columns, the last one masked; each
// output is one fma chain over N in order, as the scalar definition computes it (the same bits
// as the reference and the AVX2 path). Twice the AVX2 tile's columns per instruction: the vision
// tower's attention GEMMs (kernels/cpu/vision_attention) and MLA's W_uk absorption run on it.
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

// Columns [k0, k0 + 16 * KV) of TT tokens; the last vector holds `tail` (1..16) columns.
template <int TT, int KV>
inline void tile(const float* x, int64_t x_stride, const float* w, int64_t row_stride, int64_t rows,
                 int64_t k0, int tail, float* y, int64_t y_stride) {
  const __mmask16 last = static_cast<__mmask16>((1u << tail) - 1u);
  __m512 acc[TT][KV];
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < KV; ++j) acc[t][j] = _mm512_setzero_ps();
  for (int64_t n = 0; n < rows; ++n) {
    const float* wr = w + n * row_stride + k0;
    __m512 wv[KV];
#pragma GCC unroll 4
    for (int j = 0; j < KV; ++j) {
      wv[j] = j == KV - 1 ? _mm512_maskz_loadu_ps(last, wr + 16 * j) : _mm512_loadu_ps(wr + 16 * j);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TT; ++t) {
      const __m512 xv = _mm512_set1_ps(x[t * x_stride + n]);
#pragma GCC unroll 4
      for (int j = 0; j < KV; ++j) acc[t][j] = _mm512_fmadd_ps(xv, wv[j], acc[t][j]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < TT; ++t) {
    float* yt = y + t * y_stride + k0;
#pragma GCC unroll 4
    for (int j = 0; j < KV; ++j) {
      if (j == KV - 1) {
        _mm512_mask_storeu_ps(yt + 16 * j, last, acc[t][j]);
      } else {
        _mm512_storeu_ps(yt + 16 * j, acc[t][j]);
      }
    }
  }
}

template <int TT>
void tokens(const float* x, int64_t x_stride, const WeightView& w, float* y, int64_t y_stride) {
  const auto* data = static_cast<const float*>(w.data);
  int64_t k = 0;
  for (; k + 48 <= w.cols; k += 48) {
    tile<TT, 3>(x, x_stride, data, w.row_stride, w.rows, k, 16, y, y_stride);
  }
  const int64_t left = w.cols - k;  // 0..47
  if (left > 32) {
    tile<TT, 3>(x, x_stride, data, w.row_stride, w.rows, k, static_cast<int>(left - 32), y,
                y_stride);
  } else if (left > 16) {
    tile<TT, 2>(x, x_stride, data, w.row_stride, w.rows, k, static_cast<int>(left - 16), y,
                y_stride);
  } else if (left > 0) {
    tile<TT, 1>(x, x_stride, data, w.row_stride, w.rows, k, static_cast<int>(left), y, y_stride);
  }
}

}  // namespace

void untransposed_avx512(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                         float* y, int64_t y_stride) {
  if (num_tokens <= 0 || w.cols <= 0) return;
  int64_t t = 0;
  for (; t + 4 <= num_tokens; t += 4) {
    tokens<4>(x + t * x_stride, x_stride, w, y + t * y_stride, y_stride);
  }
  const float* xt = x + t * x_stride;
  float* yt = y + t * y_stride;
  switch (num_tokens - t) {
    case 3:
      tokens<3>(xt, x_stride, w, yt, y_stride);
      break;
    case 2:
      tokens<2>(xt, x_stride, w, yt, y_stride);
      break;
    case 1:
      tokens<1>(xt, x_stride, w, yt, y_stride);
      break;
    default:
      break;
  }
}

}  // namespace epserve::matmul_detail
