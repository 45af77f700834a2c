// AVX-VNNI (256-bit, VEX) path of the INT4-A8 order (matmul_quant.h): the AVX512-VNNI kernel's
// steps on two ymm halves, lanes 0-7 and 8-15 of each chunk, so the same bits on CPUs with
// AVX-VNNI and no AVX-512 (Alder Lake and later client cores, Zen 5 with AVX-512 turned off).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

inline float reduce16(__m256 lo, __m256 hi) {
  const __m256 h = _mm256_add_ps(lo, hi);
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}

// Weight scales of row `srow` for the lanes of the chunk at view column k, two halves.
inline void lane_scales(const WeightView& w, int64_t srow, int64_t k, int lanes, __m256& s0,
                        __m256& s1) {
  if (lanes == 16 && w.block_cols == 32 && w.col0 % 32 == 0) {
    const int64_t i = srow + (w.col0 + k) / 32;
    __m128 s;
    if (w.scale_dtype == DType::BF16) {
      const __m128i b = _mm_loadl_epi64(
          reinterpret_cast<const __m128i*>(static_cast<const bf16_t*>(w.scales) + i));
      s = _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(b), 16));
    } else {
      s = _mm_loadu_ps(static_cast<const float*>(w.scales) + i);
    }
    const __m256 both = _mm256_castps128_ps256(s);
    s0 = _mm256_permutevar8x32_ps(both, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    s1 = _mm256_permutevar8x32_ps(both, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
    return;
  }
  alignas(32) float s[16] = {};
  for (int l = 0; l < lanes; ++l) {
    const int64_t i = srow + (w.col0 + k + 8 * l) / w.block_cols;
    s[l] = w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                        : static_cast<const float*>(w.scales)[i];
  }
  s0 = _mm256_load_ps(s);
  s1 = _mm256_load_ps(s + 8);
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
  {
    const size_t scale_size = dtype_size(w.scale_dtype);
    const char* next =
        static_cast<const char*>(w.scales) + (srow[MR - 1] + w.scale_stride) * scale_size;
    const int64_t bytes = MR * w.scale_stride * static_cast<int64_t>(scale_size);
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
  }
  __m256 acc[MT][MR][2];
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[t][r][0] = acc[t][r][1] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t c = 0; c < xa.chunks; ++c) {
    const int64_t k = c * 128;
    const int lanes = static_cast<int>(std::min<int64_t>(16, (w.cols - k) / 8));
    // Per half: a lane mask (all ones where valid) for the loads and the accumulation.
    __m256i valid[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i lane =
          _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * h));
      valid[h] = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), lane);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m256 sw[2];
      lane_scales(w, srow[r], k, lanes, sw[0], sw[1]);
      // The next tile's rows, as the AVX512-VNNI kernel.
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c * 16 + next_tile), _MM_HINT_T0);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int* src = reinterpret_cast<const int*>(rows[r] + c * 16 + 8 * h);
        const __m256i v = lanes == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))
                                      : _mm256_maskload_epi32(src, valid[h]);
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 8
        for (int t = 0; t < MT; ++t) {
          const int64_t i = (t0 + t) * xa.chunks + c;
          const __m256i xe =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(xa.packed + i * 128 + 32 * h));
          const __m256i xo = _mm256_load_si256(
              reinterpret_cast<const __m256i*>(xa.packed + i * 128 + 64 + 32 * h));
          const __m256i off =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(xa.offset + i * 16 + 8 * h));
          const __m256 dx = _mm256_load_ps(xa.lane_scale + i * 16 + 8 * h);
          __m256i s = _mm256_dpbusd_avx_epi32(off, lo, xe);
          s = _mm256_dpbusd_avx_epi32(s, hi, xo);
          const __m256 f =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sw[h], dx), acc[t][r][h]);
          acc[t][r][h] =
              lanes == 16 ? f : _mm256_blendv_ps(acc[t][r][h], f, _mm256_castsi256_ps(valid[h]));
        }
      }
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < MR; ++r)
      y[(t0 + t) * w.rows + n + r] = reduce16(acc[t][r][0], acc[t][r][1]);
}

template <int MT, int MR>
void token_group(const Int8Activations& xa, const WeightView& w, float* y, int64_t t0,
                 int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + MR <= n_end; n += MR) tile<MT, MR>(xa, w, y, t0, n);
  for (; n < n_end; ++n) tile<MT, 1>(xa, w, y, t0, n);
}

}  // namespace

void int4_a8_rows_avxvnni(const Int8Activations& xa, const WeightView& w, float* y, int64_t n_begin,
                          int64_t n_end) {
  // Blocks of eight rows, each taken by every pair of tokens before the next block is read: the
  // first pair reads the rows from memory, the others find them in L1.
  constexpr int64_t kRowBlock = 8;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kRowBlock) {
    const int64_t n1 = std::min(n_end, n0 + kRowBlock);
    for (int64_t t0 = 0; t0 < xa.num_tokens; t0 += 2) {
      if (xa.num_tokens - t0 == 1) {
        token_group<1, 4>(xa, w, y, t0, n0, n1);
      } else {
        token_group<2, 2>(xa, w, y, t0, n0, n1);
      }
    }
  }
}

}  // namespace epserve::matmul_detail
