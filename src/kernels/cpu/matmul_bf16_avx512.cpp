// AVX512-BF16 paths of matmul for BF16 weights, in the BF16 canonical order of
// matmul_internal.h: one vdpbf16ps per 32 columns of each (token, row) pair, the sixteen lane
// sums reduced at the end. A register tile holds MT tokens x MN rows of lane sums; x (rounded
// to bf16 once per call, rows padded to 32) and the weight rows are read unpacked, so the tile
// is a dot product and the same instructions compute y[t, n] whatever the tile, the blocking
// or the number of tokens.
// GCC 12 warns, wrongly, about the undefined upper halves inside its AVX-512 cast intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>

#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

// h[l] = a[l] + a[l + 8], then q[l] = h[l] + h[l + 4], p[l] = q[l] + q[l + 2], p[0] + p[1].
inline float reduce16(__m512 a) {
  __m512 upper = _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_castps512_ps256(upper));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

// Bytes ahead at which each weight row is prefetched: the tile streams MN rows at once and
// the hardware prefetchers lose each stream at every 4 KB page.
template <int MT>
constexpr int64_t kPrefetchBytes = 1024;

// y[t, n] for MT tokens x MN rows over all K columns.
template <int MT, int MN, bool kPrefetch>
inline void tile(const bf16_t* xb, int64_t x_stride, const bf16_t* w, int64_t row_stride,
                 int64_t k_cols, float* y, int64_t y_stride) {
  __m512 acc[MT][MN];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) acc[t][n] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= k_cols; k += 32) {
    __m512bh xv[MT];
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t) {
      xv[t] = (__m512bh)_mm512_load_si512(xb + t * x_stride + k);
    }
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) {
      const bf16_t* row = w + n * row_stride + k;
      // No software prefetch in a one-token tile: its twelve row streams keep the hardware
      // prefetchers busy, and the prefetches only cost issue slots (batch-1 decode of the
      // bench model, 2 threads, AMD EPYC: ~4% faster without them, 9 of 12 interleaved runs).
      if constexpr (kPrefetch && MT != 1) {
        _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes<MT>, _MM_HINT_T0);
        // The same columns of the next tile's rows, into L2: the tile streams only MN rows
        // (three for four tokens), too few to keep DRAM busy on their own.
        _mm_prefetch(reinterpret_cast<const char*>(row + MN * row_stride), _MM_HINT_T1);
      }
      __m512bh wv = (__m512bh)_mm512_loadu_si512(row);
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm512_dpbf16_ps(acc[t][n], xv[t], wv);
    }
  }
  if (k < k_cols) {
    const __mmask32 mask = _cvtu32_mask32((1u << (k_cols - k)) - 1u);
    __m512bh xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = (__m512bh)_mm512_load_si512(xb + t * x_stride + k);
    for (int n = 0; n < MN; ++n) {
      __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + n * row_stride + k);
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm512_dpbf16_ps(acc[t][n], xv[t], wv);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) y[t * y_stride + n] = reduce16(acc[t][n]);
}

// Rows [n0, n1) for MT tokens: MN rows per tile, then single rows.
template <int MT, int MN, bool kPrefetch>
void token_group(const bf16_t* xb, int64_t x_stride, const WeightView& w, float* y, int64_t n0,
                 int64_t n1) {
  const bf16_t* data = static_cast<const bf16_t*>(w.data);
  int64_t n = n0;
  for (; n + MN <= n1; n += MN) {
    tile<MT, MN, kPrefetch>(xb, x_stride, data + n * w.row_stride, w.row_stride, w.cols, y + n,
                            w.rows);
  }
  for (; n < n1; ++n) {
    tile<MT, 1, kPrefetch>(xb, x_stride, data + n * w.row_stride, w.row_stride, w.cols, y + n,
                           w.rows);
  }
}

}  // namespace

// The GEMM order: a block of tokens stays in L2 while each chunk of six rows (24 KB at
// K = 2048) stays in L1 and every group of four tokens passes over it.
void gemm_rows(const bf16_t* xb, int64_t x_stride, int64_t num_tokens, const WeightView& w,
               float* y, int64_t n_begin, int64_t n_end, int64_t token_block) {
  const bf16_t* data = static_cast<const bf16_t*>(w.data);
  for (int64_t tb = 0; tb < num_tokens; tb += token_block) {
    const int64_t te = std::min(num_tokens, tb + token_block);
    for (int64_t n = n_begin; n < n_end; n += 6) {
      const int64_t rows = std::min<int64_t>(6, n_end - n);
      const bf16_t* wn = data + n * w.row_stride;
      for (int64_t t = tb; t < te; t += 4) {
        const bf16_t* xt = xb + t * x_stride;
        float* yt = y + t * w.rows + n;
        const int64_t group = std::min<int64_t>(4, te - t);
        if (rows == 6 && group == 4) {
          tile<4, 6, false>(xt, x_stride, wn, w.row_stride, w.cols, yt, w.rows);
          continue;
        }
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t i = 0; i < group; ++i) {
            tile<1, 1, false>(xt + i * x_stride, x_stride, wn + r * w.row_stride, w.row_stride,
                              w.cols, yt + i * w.rows + r, w.rows);
          }
        }
      }
    }
  }
}

void bf16_rows_avx512(const bf16_t* xb, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                      float* y, int64_t n_begin, int64_t n_end, int64_t row_block) {
  if (row_block > kGemvRowChunk) {
    gemm_rows(xb, x_stride, num_tokens, w, y, n_begin, n_end, 64);
    return;
  }
  for (int64_t n0 = n_begin; n0 < n_end; n0 += row_block) {
    const int64_t n1 = std::min(n_end, n0 + row_block);
    // The first group of tokens reads the block from memory (prefetching ahead in each row);
    // the others find it in L2.
    for (int64_t t0 = 0; t0 < num_tokens; t0 += 4) {
      const bf16_t* xt = xb + t0 * x_stride;
      float* yt = y + t0 * w.rows;
      const int64_t group = std::min<int64_t>(4, num_tokens - t0);
      if (t0 == 0) {
        switch (group) {
          case 1:
            token_group<1, 12, true>(xt, x_stride, w, yt, n0, n1);
            break;
          case 2:
            token_group<2, 6, true>(xt, x_stride, w, yt, n0, n1);
            break;
          case 3:
            token_group<3, 4, true>(xt, x_stride, w, yt, n0, n1);
            break;
          default:
            token_group<4, 3, true>(xt, x_stride, w, yt, n0, n1);
            break;
        }
        continue;
      }
      switch (group) {
        case 1:
          token_group<1, 12, false>(xt, x_stride, w, yt, n0, n1);
          break;
        case 2:
          token_group<2, 12, false>(xt, x_stride, w, yt, n0, n1);
          break;
        case 3:
          token_group<3, 6, false>(xt, x_stride, w, yt, n0, n1);
          break;
        default:
          token_group<4, 6, false>(xt, x_stride, w, yt, n0, n1);
          break;
      }
    }
  }
}

void round_to_bf16_avx512(const float* x, int64_t num_tokens, int64_t k_cols, bf16_t* xb,
                          int64_t x_stride) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* src = x + t * k_cols;
    bf16_t* dst = xb + t * x_stride;
    for (int64_t k = 0; k < x_stride; k += 32) {
      int64_t rest = std::clamp<int64_t>(k_cols - k, 0, 32);
      __mmask16 lo = _cvtu32_mask16(rest >= 16 ? 0xffffu : (1u << rest) - 1u);
      __mmask16 hi = _cvtu32_mask16(rest <= 16 ? 0u : (1u << (rest - 16)) - 1u);
      __m512 a = _mm512_maskz_loadu_ps(lo, src + k);
      __m512 b = _mm512_maskz_loadu_ps(hi, src + k + 16);
      _mm512_store_si512(dst + k, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
  }
}

}  // namespace epserve::matmul_detail
