// AVX512-VNNI path of the INT4-A8 order (matmul_quant.h). 64 bytes of a packed row are 128
// columns: the low nibbles are the even columns and the high nibbles the odd ones, and dword
// lane l holds the eight columns of word l. Two vpdpbusd per token (unsigned nibbles 0..15 times
// the token's int8 values, laid out to match, starting from -8 x the lane's sum of x) give each
// lane's exact sum of (nibble - 8) x q; it is converted to fp32 and added with one fma scaled by
// the group scales. Tiles: MT tokens x MR rows (8 for one token). The next tile's rows and
// scales are prefetched while a tile runs.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

inline float reduce16(__m512 a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}

// The weight scales of row `srow` for the sixteen lanes of the chunk at view column k.
inline __m512 lane_scales(const WeightView& w, int64_t srow, int64_t k, int lanes) {
  const int64_t g0 = (w.col0 + k) / w.block_cols;
  if (w.block_cols == 32 && w.col0 % 32 == 0) {
    const int groups = (lanes + 3) / 4;
    const __mmask8 m = static_cast<__mmask8>((1u << groups) - 1);
    if (w.scale_dtype == DType::BF16) {
      const __m128i s = _mm_maskz_loadu_epi16(m, static_cast<const bf16_t*>(w.scales) + srow + g0);
      // dword lane l = bf16 number l / 4 in its high half
      alignas(64) static const uint16_t kIdx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1,
                                                    0, 2, 0, 2, 0, 2, 0, 2, 0, 3, 0, 3, 0, 3, 0, 3};
      const __m512i idx = _mm512_load_si512(kIdx);
      return _mm512_castsi512_ps(
          _mm512_maskz_permutexvar_epi16(0xaaaaaaaau, idx, _mm512_castsi128_si512(s)));
    }
    const __m128 s = _mm_maskz_loadu_ps(m, static_cast<const float*>(w.scales) + srow + g0);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s));
  }
  alignas(64) float s[16] = {};
  for (int l = 0; l < lanes; ++l) {
    const int64_t i = srow + (w.col0 + k + 8 * l) / w.block_cols;
    s[l] = w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                        : static_cast<const float*>(w.scales)[i];
  }
  return _mm512_load_ps(s);
}

template <int MT, int MR>
void tile(const Int8Activations& xa, const WeightView& w, float* y, int64_t t0, int64_t n) {
  const uint32_t* rows[MR];
  int64_t srow[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    rows[r] = static_cast<const uint32_t*>(w.data) + ((w.row0 + n + r) * w.row_stride + w.col0) / 8;
    srow[r] = (w.row0 + n + r) * w.scale_stride;
  }
  const int64_t next_tile = MR * w.row_stride / 8;  // words
  // The scales of the next tile's rows (a stream of their own, 2 bytes per 32 weights).
  {
    const char* next =
        static_cast<const char*>(w.scales) +
        (srow[MR - 1] + w.scale_stride) * static_cast<int64_t>(dtype_size(w.scale_dtype));
    const int64_t bytes = MR * w.scale_stride * static_cast<int64_t>(dtype_size(w.scale_dtype));
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
  }
  __m512 acc[MT][MR];
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[t][r] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  for (int64_t c = 0; c < xa.chunks; ++c) {
    const int64_t k = c * 128;
    const int lanes = static_cast<int>(std::min<int64_t>(16, (w.cols - k) / 8));
    const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1);
    __m512i xe[MT], xo[MT], off[MT];
    __m512 dx[MT];
#pragma GCC unroll 8
    for (int t = 0; t < MT; ++t) {
      const int64_t i = (t0 + t) * xa.chunks + c;
      xe[t] = _mm512_load_si512(xa.packed + i * 128);
      xo[t] = _mm512_load_si512(xa.packed + i * 128 + 64);
      off[t] = _mm512_load_si512(xa.offset + i * 16);
      dx[t] = _mm512_load_ps(xa.lane_scale + i * 16);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      // The same columns of the next tile's rows (as the FP8-BF16 kernel).
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c * 16 + next_tile), _MM_HINT_T0);
      const __m512i v = lanes == 16 ? _mm512_loadu_si512(rows[r] + c * 16)
                                    : _mm512_maskz_loadu_epi32(valid, rows[r] + c * 16);
      const __m512i lo = _mm512_and_si512(v, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      const __m512 sw = lane_scales(w, srow[r], k, lanes);
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) {
        __m512i s = _mm512_dpbusd_epi32(off[t], lo, xe[t]);
        s = _mm512_dpbusd_epi32(s, hi, xo[t]);
        const __m512 cs = _mm512_mul_ps(sw, dx[t]);
        acc[t][r] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(s), cs, acc[t][r], valid);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) y[(t0 + t) * w.rows + n + r] = reduce16(acc[t][r]);
}

template <int MT, int MR>
void token_group(const Int8Activations& xa, const WeightView& w, float* y, int64_t t0,
                 int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + MR <= n_end; n += MR) tile<MT, MR>(xa, w, y, t0, n);
  for (; n < n_end; ++n) tile<MT, 1>(xa, w, y, t0, n);
}

}  // namespace

void int4_a8_rows_avx512vnni(const Int8Activations& xa, const WeightView& w, float* y,
                             int64_t n_begin, int64_t n_end) {
  for (int64_t t0 = 0; t0 < xa.num_tokens; t0 += 4) {
    switch (std::min<int64_t>(4, xa.num_tokens - t0)) {
      case 1:
        token_group<1, 8>(xa, w, y, t0, n_begin, n_end);
        break;
      case 2:
        token_group<2, 4>(xa, w, y, t0, n_begin, n_end);
        break;
      case 3:
        token_group<3, 2>(xa, w, y, t0, n_begin, n_end);
        break;
      default:
        token_group<4, 2>(xa, w, y, t0, n_begin, n_end);
        break;
    }
  }
}

}  // namespace epserve::matmul_detail
