// AVX2 + FMA GEMV path of matmul (up to a few dozen tokens), in the canonical order of
// matmul_internal.h. Weights are read straight from the view and widened to fp32 in registers;
// the rows are taken in chunks of kGemvRowChunk, and every group of up to kGemvGroupTokens tokens
// passes over a chunk (twelve rows, or fewer per tile for more tokens) before the next one.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

// Bytes ahead of the current column at which each weight row is prefetched: a GEMV streams
// several rows at once, and the hardware prefetchers lose each stream at every 4 KB page.
// Measured best on Zen 3 for BF16 rows; F32 rows are consumed twice as fast.
template <int MT, typename W>
constexpr int64_t prefetch_bytes() {
  return (MT == 1 ? 256 : 512) * static_cast<int64_t>(sizeof(W)) / 2;
}

// One block of eight columns for every (token, row) pair of the tile.
template <int MT, int MN, typename W>
inline void gemv_block(const float* x, int64_t k_cols, const W* w, int64_t row_stride, int64_t k,
                       __m256 (&acc)[MT][MN]) {
  __m256 xv[MT];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t) xv[t] = _mm256_loadu_ps(x + t * k_cols + k);
#pragma GCC unroll 16
  for (int n = 0; n < MN; ++n) {
    __m256 wv = load8(w + n * row_stride + k);
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
  }
}

// y[t, n] for MT tokens x MN weight rows, reading x and w unpacked.
template <int MT, int MN, typename W>
inline void gemv_tile(const float* x, int64_t k_cols, const W* w, int64_t row_stride, float* y,
                      int64_t y_stride) {
  __m256 acc[MT][MN];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) acc[t][n] = _mm256_setzero_ps();
  int64_t k = 0;
  // 64 bytes of every row per step: one cache line of BF16, two of F32.
  constexpr int64_t kStep = 64 / sizeof(W) < 32 ? 32 : 64 / sizeof(W);
  for (; k + kStep <= k_cols; k += kStep) {
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) {
      const char* line = reinterpret_cast<const char*>(w + n * row_stride + k);
#pragma GCC unroll 2
      for (size_t b = 0; b < kStep * sizeof(W); b += 64) {
        _mm_prefetch(line + prefetch_bytes<MT, W>() + b, _MM_HINT_T0);
      }
    }
#pragma GCC unroll 8
    for (int64_t i = 0; i < kStep; i += 8) gemv_block<MT, MN>(x, k_cols, w, row_stride, k + i, acc);
  }
  for (; k + 8 <= k_cols; k += 8) gemv_block<MT, MN>(x, k_cols, w, row_stride, k, acc);
  if (k < k_cols) {
    int64_t rest = k_cols - k;
    __m256 xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = load_tail(x + t * k_cols + k, rest);
    for (int n = 0; n < MN; ++n) {
      __m256 wv = load_tail(w + n * row_stride + k, rest);
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) y[t * y_stride + n] = reduce8(acc[t][n]);
}

template <int MT, int MN, typename W>
void gemv_token_group(const float* x, const WeightView& w, float* y, int64_t n_begin,
                      int64_t n_end) {
  const W* data = static_cast<const W*>(w.data);
  int64_t n = n_begin;
  for (; n + MN <= n_end; n += MN) {
    gemv_tile<MT, MN>(x, w.cols, data + n * w.row_stride, w.row_stride, y + n, w.rows);
  }
  for (; n < n_end; ++n) {
    gemv_tile<MT, 1>(x, w.cols, data + n * w.row_stride, w.row_stride, y + n, w.rows);
  }
}

template <typename W>
void gemv_rows(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
               int64_t n_end) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kGemvRowChunk) {
    const int64_t n1 = std::min(n_end, n0 + kGemvRowChunk);
    for (int64_t t0 = 0; t0 < num_tokens; t0 += kGemvGroupTokens) {
      const float* xt = x + t0 * w.cols;
      float* yt = y + t0 * w.rows;
      // Twelve lane sums in registers per tile: enough rows streaming at once to keep DRAM busy.
      switch (std::min(kGemvGroupTokens, num_tokens - t0)) {
        case 1:
          gemv_token_group<1, 12, W>(xt, w, yt, n0, n1);
          break;
        case 2:
          gemv_token_group<2, 6, W>(xt, w, yt, n0, n1);
          break;
        case 3:
          gemv_token_group<3, 4, W>(xt, w, yt, n0, n1);
          break;
        default:
          gemv_token_group<4, 3, W>(xt, w, yt, n0, n1);
          break;
      }
    }
  }
}

}  // namespace

void gemv_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                    int64_t n_begin, int64_t n_end) {
  if (w.dtype == DType::BF16) {
    gemv_rows<bf16_t>(x, num_tokens, w, y, n_begin, n_end);
  } else {
    gemv_rows<float>(x, num_tokens, w, y, n_begin, n_end);
  }
}

}  // namespace epserve::matmul_detail
