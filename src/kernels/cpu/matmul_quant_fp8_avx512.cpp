// AVX512-BF16 path of the FP8-BF16 order (matmul_quant.h). 32 e4m3 codes become the bf16 bits
// of their value x 2^8 in four instructions (sign-extend bytes to words, shift left 4: sign,
// exponent and mantissa land where bf16 has them; keep those bits and set the exponent's top bit,
// which adds 128 to the exponent, i.e. 2^8 over e4m3's bias of 7). Subnormal codes (exponent 0)
// are rare in a block-scaled checkpoint: when a chunk has one, a 16-bit table lookup replaces
// them. One vdpbf16ps per token then takes the 32 columns, and each block's lane sums are scaled
// with one fma. Tiles: MT tokens x MR rows of lane sums (8 rows for one token: fewer rows read
// memory more slowly, and 12 spill registers). Past four tokens the codes are decoded once per
// block of rows: the first tile over them keeps their bf16 values in a per-thread buffer (L1 or
// L2), and the later groups of tokens read those, so the decode is not redone per token group.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

// bf16 bits of (m x 2^-9) x 2^8 = m / 2 for the subnormal codes m = 0..7 (table entries 8..31
// are not used: the index of a subnormal code is its mantissa).
const __m512i& subnormal_table() {
  static const __m512i table = [] {
    alignas(64) uint16_t t[32] = {};
    for (int m = 0; m < 8; ++m) {
      const float v = fp8_e4m3_to_f32(static_cast<uint8_t>(m)) * 256.0f;
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      t[m] = static_cast<uint16_t>(bits >> 16);
    }
    return _mm512_load_si512(t);
  }();
  return table;
}

inline __m512bh decode32(const uint8_t* p, const __m512i& table) {
  const __m512i sx = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i t = _mm512_slli_epi16(sx, 4);
  // (t & 0x87f0) | 0x4000
  __m512i bits = _mm512_ternarylogic_epi32(t, _mm512_set1_epi16(static_cast<short>(0x87f0)),
                                           _mm512_set1_epi16(0x4000), 0xea);
  const __mmask32 sub = _mm512_testn_epi16_mask(t, _mm512_set1_epi16(0x0780));
  if (__builtin_expect(sub != 0, 0)) {
    const __m512i mag = _mm512_permutexvar_epi16(sx, table);
    // mag | (sx & 0x8000): the sign
    const __m512i fix =
        _mm512_ternarylogic_epi32(mag, sx, _mm512_set1_epi16(static_cast<short>(0x8000)), 0xf8);
    bits = _mm512_mask_mov_epi16(bits, sub, fix);
  }
  return (__m512bh)bits;
}

inline float reduce16(__m512 a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));  // q0 + q2, q1 + q3
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}

// y for MT tokens x MR rows from row n over all columns. kFrom: kCodes decodes the e4m3 codes
// in registers (kStore also writes their bf16 values to `dec`, MR rows of w.cols), kDecoded
// reads rows that an earlier tile wrote to `dec`. The products and sums are the same either way.
enum class Source { kCodes, kStore, kDecoded };

template <int MT, int MR, Source kFrom>
void tile(const bf16_t* xb, int64_t x_stride, const WeightView& w, bf16_t* dec, float* y,
          int64_t n) {
  const __m512i& table = subnormal_table();
  const uint8_t* rows[MR];
  int64_t scale_row[MR];
  const float* scales = static_cast<const float*>(w.scales);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    rows[r] = static_cast<const uint8_t*>(w.data) + (w.row0 + n + r) * w.row_stride + w.col0;
    scale_row[r] = (w.row0 + n + r) / w.block_rows * w.scale_stride;
  }
  const int64_t next_tile = MR * w.row_stride;
  __m512 acc[MT][MR];
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[t][r] = _mm512_setzero_ps();
  int64_t b = w.col0 / w.block_cols;
  for (int64_t k = 0; k < w.cols; ++b) {
    const int64_t block_end = std::min(w.cols, (b + 1) * w.block_cols - w.col0);
    __m512 p[MT][MR];
#pragma GCC unroll 8
    for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) p[t][r] = _mm512_setzero_ps();
    for (; k < block_end; k += 32) {
      __m512bh xv[MT];
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) xv[t] = (__m512bh)_mm512_loadu_si512(xb + t * x_stride + k);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        __m512bh wv;
        if constexpr (kFrom == Source::kDecoded) {
          wv = (__m512bh)_mm512_load_si512(dec + r * w.cols + k);
        } else {
          // The same columns of the next tile's rows: each tile starts MR new streams, which
          // the hardware prefetchers alone left waiting on memory (1.25-1.5x of BF16 instead
          // of ~2x).
          if (k % 64 == 0)
            _mm_prefetch(reinterpret_cast<const char*>(rows[r] + k + next_tile), _MM_HINT_T0);
          wv = decode32(rows[r] + k, table);
          if constexpr (kFrom == Source::kStore)
            _mm512_store_si512(dec + r * w.cols + k, (__m512i)wv);
        }
#pragma GCC unroll 8
        for (int t = 0; t < MT; ++t) p[t][r] = _mm512_dpbf16_ps(p[t][r], xv[t], wv);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 s = _mm512_set1_ps(scales[scale_row[r] + b] * 0x1p-8f);
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) acc[t][r] = _mm512_fmadd_ps(p[t][r], s, acc[t][r]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) y[t * w.rows + n + r] = reduce16(acc[t][r]);
}

// Rows [n0, n1) for MT tokens: MR rows per tile, then single rows. dec holds row n0's values.
template <int MT, int MR, Source kFrom>
void token_group(const bf16_t* xb, int64_t x_stride, const WeightView& w, bf16_t* dec, float* y,
                 int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + MR <= n1; n += MR) tile<MT, MR, kFrom>(xb, x_stride, w, dec + (n - n0) * w.cols, y, n);
  for (; n < n1; ++n) tile<MT, 1, kFrom>(xb, x_stride, w, dec + (n - n0) * w.cols, y, n);
}

// A group of `count` tokens (1..kGroup) over rows [n0, n1).
template <Source kFrom>
void group(const bf16_t* xb, int64_t x_stride, int64_t count, const WeightView& w, bf16_t* dec,
           float* y, int64_t n0, int64_t n1) {
  switch (count) {
    case 1:
      token_group<1, 8, kFrom>(xb, x_stride, w, dec, y, n0, n1);
      break;
    case 2:
      token_group<2, 4, kFrom>(xb, x_stride, w, dec, y, n0, n1);
      break;
    case 3:
      token_group<3, 2, kFrom>(xb, x_stride, w, dec, y, n0, n1);
      break;
    default:
      token_group<4, 2, kFrom>(xb, x_stride, w, dec, y, n0, n1);
      break;
  }
}

// Rows decoded once per block, kept in L1/L2 for every later group of tokens.
bf16_t* decoded_rows(int64_t count) {
  static thread_local std::unique_ptr<bf16_t, void (*)(void*)> buffer{nullptr, std::free};
  static thread_local int64_t capacity = 0;
  if (count > capacity) {
    auto* p = static_cast<bf16_t*>(std::aligned_alloc(64, static_cast<size_t>(count) * 2));
    EPS_CHECK(p != nullptr, "matmul: out of memory for {} decoded weights", count);
    buffer.reset(p);
    capacity = count;
  }
  return buffer.get();
}

// Measured on Zen 5 (quant_matmul_bench, 1 thread, rows in cache and in memory): up to four
// tokens read the codes directly (4 x 2 tiles); beyond, 2 x 4 tiles over the decoded rows beat
// 4 x 2 (whose lane sums, block sums and tokens need 29 registers) and 3 x 4 at 8 to 64 tokens.
constexpr int64_t kDirectTokens = 4;
constexpr int64_t kRowBlock = 8;  // 16 KB of decoded rows at K = 1024, 56 KB at 3584
constexpr int64_t kGroup = 2;     // tokens per tile over the decoded rows, first group included

}  // namespace

void fp8_bf16_rows_avx512(const bf16_t* xb, int64_t x_stride, int64_t num_tokens,
                          const WeightView& w, float* y, int64_t n_begin, int64_t n_end) {
  if (num_tokens <= kDirectTokens) {
    group<Source::kCodes>(xb, x_stride, num_tokens, w, nullptr, y, n_begin, n_end);
    return;
  }
  // Blocks of kRowBlock rows: the first kGroup tokens decode them from memory and keep their
  // bf16 values, every later group of tokens reuses those.
  bf16_t* dec = decoded_rows(kRowBlock * w.cols);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kRowBlock) {
    const int64_t n1 = std::min(n_end, n0 + kRowBlock);
    group<Source::kStore>(xb, x_stride, kGroup, w, dec, y, n0, n1);
    int64_t t0 = kGroup;
    for (; t0 + kGroup <= num_tokens; t0 += kGroup) {
      token_group<kGroup, 4, Source::kDecoded>(xb + t0 * x_stride, x_stride, w, dec,
                                               y + t0 * w.rows, n0, n1);
    }
    if (t0 < num_tokens) {
      group<Source::kDecoded>(xb + t0 * x_stride, x_stride, num_tokens - t0, w, dec,
                              y + t0 * w.rows, n0, n1);
    }
  }
}

}  // namespace epserve::matmul_detail
