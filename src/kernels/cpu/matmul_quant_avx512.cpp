// AVX-512 (F/BW/VL/DQ) path of the block-scaled matmul (matmul_quant.h). A zmm holds the same
// eight columns of two weight rows, [row A | row B], so each half is one output's eight lane sums
// in the canonical order (matmul_internal.h), and x's eight columns are broadcast to both halves.
// Decoding two rows per instruction halves the decode work per weight of the AVX2 path:
//  - FP8: the two rows' codes are interleaved into the high bytes of 16-bit lanes (one unpack),
//    moved to fp16 bits (shift, mask), widened by vcvtph2ps zmm and multiplied by scale x 2^8;
//  - INT4: a 32-entry table of (q - 8) x scale for the two rows (one multiply per row and group)
//    is indexed by each nibble with vpermt2ps, after a variable shift and a ternary-logic mask.
// Tiles: one token x 2 row pairs (more pairs ran slower at batch 1), 2 tokens x 4 pairs, 3-4
// tokens x 2 pairs. Both give one rounding of the exact dequantised value, so the bits of
// quant_rows_scalar. GCC 12's AVX-512 headers build their "undefined" vectors from themselves,
// which -Wuninitialized reports at every inlined use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

inline __m512 two_halves(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

// e4m3 codes in the high bytes of 16-bit lanes -> fp16 bits worth fp8 x 2^-8 -> fp32 x scale.
inline __m512 fp8_from_high_bytes(__m256i v, __m512 scale) {
  v = _mm256_and_si256(_mm256_srai_epi16(v, 1), _mm256_set1_epi16(static_cast<short>(0xbf80)));
  return _mm512_mul_ps(_mm512_cvtph_ps(v), scale);
}

struct Fp8Decoder {
  static constexpr int64_t kPrefetchColumns = 64;
  const uint8_t* data;
  int64_t row_stride;

  const uint8_t* row(int64_t r, int64_t c) const { return data + r * row_stride + c; }
  static int64_t offset(int64_t k) { return k; }
  // The scale times 2^8 (exact below 2^119): see Fp8Decoder in matmul_quant_avx2.cpp.
  static bool scale_ok(float s) { return std::fabs(s) < 0x1p100f; }
  struct Scale {
    __m512 s;
  };
  static Scale make_scale(float a, float b) { return {two_halves(a * 256.0f, b * 256.0f)}; }
  // Columns k..k+7 of rows a and b.
  static __m512 decode8(const uint8_t* a, const uint8_t* b, const Scale& s) {
    const __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a))),
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b)), 1);
    return fp8_from_high_bytes(_mm256_unpacklo_epi8(_mm256_setzero_si256(), v), s.s);
  }
  // Columns k..k+15 of rows a and b: two zmm, columns k..k+7 then k+8..k+15.
  static void decode16(const uint8_t* a, const uint8_t* b, const Scale& s, __m512& w0, __m512& w1) {
    const __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
    w0 = fp8_from_high_bytes(_mm256_unpacklo_epi8(_mm256_setzero_si256(), v), s.s);
    w1 = fp8_from_high_bytes(_mm256_unpackhi_epi8(_mm256_setzero_si256(), v), s.s);
  }
};

struct Int4Decoder {
  static constexpr int64_t kPrefetchColumns = 128;
  const uint32_t* data;
  int64_t row_stride;  // nibbles

  const uint8_t* row(int64_t r, int64_t c) const {
    return reinterpret_cast<const uint8_t*>(data + (r * row_stride + c) / 8);
  }
  static int64_t offset(int64_t k) { return k / 2; }
  static bool scale_ok(float) { return true; }
  struct Scale {
    __m512 lo, hi;  // (q - 8) x scale for q = 0..15, row a then row b
  };
  static Scale make_scale(float a, float b) {
    const __m512 q = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    return {_mm512_mul_ps(q, _mm512_set1_ps(a)), _mm512_mul_ps(q, _mm512_set1_ps(b))};
  }
  static __m512 decode8(const uint8_t* a, const uint8_t* b, const Scale& s) {
    int wa, wb;
    std::memcpy(&wa, a, 4);
    std::memcpy(&wb, b, 4);
    const __m512i words = _mm512_inserti32x8(_mm512_set1_epi32(wa), _mm256_set1_epi32(wb), 1);
    const __m512i shifted = _mm512_srlv_epi32(
        words, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28));
    // (shifted & 0xf) | (16 in row b's half): the table index.
    const __m512i index = _mm512_ternarylogic_epi32(
        shifted, _mm512_set1_epi32(0xf),
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16), 0xea);
    return _mm512_permutex2var_ps(s.lo, index, s.hi);
  }
  static void decode16(const uint8_t* a, const uint8_t* b, const Scale& s, __m512& w0, __m512& w1) {
    w0 = decode8(a, b, s);
    w1 = decode8(a + 4, b + 4, s);
  }
};

inline void store_pair(__m512 acc, float* ya, float* yb) {
  // Per half: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as quant_rows_scalar.
  __m512 t = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
  *ya = _mm512_cvtss_f32(t);
  if (yb != nullptr) *yb = _mm_cvtss_f32(_mm512_extractf32x4_ps(t, 2));
}

// y[t, n] for MT tokens x MP row pairs from view row n (rows n + 2p, n + 2p + 1); `last_single`
// makes the last pair one row (row A twice, only A written). Returns false (nothing written)
// when an FP8 scale is too large for the folded decode.
template <int MT, int MP, typename D>
bool tile(const float* x, const WeightView& w, const D& dec, int64_t n, bool last_single,
          float* y) {
  __m512 acc[MT][MP];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int p = 0; p < MP; ++p) acc[t][p] = _mm512_setzero_ps();
  const uint8_t* ra[MP];
  const uint8_t* rb[MP];
  int64_t row_a[MP], row_b[MP];
#pragma GCC unroll 16
  for (int p = 0; p < MP; ++p) {
    row_a[p] = n + 2 * p;
    row_b[p] = last_single && p == MP - 1 ? row_a[p] : row_a[p] + 1;
    ra[p] = dec.row(w.row0 + row_a[p], w.col0);
    rb[p] = dec.row(w.row0 + row_b[p], w.col0);
  }
  // Scale rows are found once per tile; the block column advances without a division.
  int64_t scale_a[MP], scale_b[MP];
#pragma GCC unroll 16
  for (int p = 0; p < MP; ++p) {
    scale_a[p] = (w.row0 + row_a[p]) / w.block_rows * w.scale_stride;
    scale_b[p] = (w.row0 + row_b[p]) / w.block_rows * w.scale_stride;
  }
  const bool bf16_scales = w.scale_dtype == DType::BF16;
  auto scale_at = [&](int64_t i) {
    return bf16_scales ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                       : static_cast<const float*>(w.scales)[i];
  };
  const int64_t full = w.cols / 8 * 8;
  int64_t k = 0;
  int64_t bc = w.col0 / w.block_cols;
  int64_t block_end = std::min(full, (bc + 1) * w.block_cols - w.col0);
  for (; k < full; ++bc, block_end = std::min(full, block_end + w.block_cols)) {
    typename D::Scale scale[MP];
#pragma GCC unroll 16
    for (int p = 0; p < MP; ++p) {
      const float sa = scale_at(scale_a[p] + bc);
      const float sb = scale_at(scale_b[p] + bc);
      if (!D::scale_ok(sa) || !D::scale_ok(sb)) return false;
      scale[p] = D::make_scale(sa, sb);
    }
    for (; k + 16 <= block_end; k += 16) {
      const int64_t off = D::offset(k);
      if ((w.col0 + k) % D::kPrefetchColumns < 16) {  // once per cache line
#pragma GCC unroll 16
        for (int p = 0; p < MP; ++p) {
          _mm_prefetch(reinterpret_cast<const char*>(ra[p] + off) + 512, _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(rb[p] + off) + 512, _MM_HINT_T0);
        }
      }
      __m512 x0[MT], x1[MT];
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) {
        x0[t] = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * w.cols + k));
        x1[t] = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * w.cols + k + 8));
      }
#pragma GCC unroll 16
      for (int p = 0; p < MP; ++p) {
        __m512 w0, w1;
        D::decode16(ra[p] + off, rb[p] + off, scale[p], w0, w1);
#pragma GCC unroll 16
        for (int t = 0; t < MT; ++t) acc[t][p] = _mm512_fmadd_ps(x0[t], w0, acc[t][p]);
#pragma GCC unroll 16
        for (int t = 0; t < MT; ++t) acc[t][p] = _mm512_fmadd_ps(x1[t], w1, acc[t][p]);
      }
    }
    if (k < block_end) {  // an odd block of eight columns
      const int64_t off = D::offset(k);
      __m512 xv[MT];
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t)
        xv[t] = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * w.cols + k));
#pragma GCC unroll 16
      for (int p = 0; p < MP; ++p) {
        const __m512 wv = D::decode8(ra[p] + off, rb[p] + off, scale[p]);
#pragma GCC unroll 16
        for (int t = 0; t < MT; ++t) acc[t][p] = _mm512_fmadd_ps(xv[t], wv, acc[t][p]);
      }
      k += 8;
    }
  }
  if (k < w.cols) {
    // The last partial block: decoded one value at a time, x and w zero past the end.
    const int64_t rest = w.cols - k;
    const __mmask8 mask = static_cast<__mmask8>((1u << rest) - 1);
    __m512 xv[MT];
    for (int t = 0; t < MT; ++t)
      xv[t] = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(mask, x + t * w.cols + k));
    for (int p = 0; p < MP; ++p) {
      float buf[16] = {};
      for (int64_t l = 0; l < rest; ++l) {
        buf[l] = quant_weight_at(w, row_a[p], k + l);
        buf[8 + l] = quant_weight_at(w, row_b[p], k + l);
      }
      const __m512 wv = _mm512_loadu_ps(buf);
      for (int t = 0; t < MT; ++t) acc[t][p] = _mm512_fmadd_ps(xv[t], wv, acc[t][p]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int p = 0; p < MP; ++p) {
      const bool single = last_single && p == MP - 1;
      store_pair(acc[t][p], y + t * w.rows + row_a[p],
                 single ? nullptr : y + t * w.rows + row_b[p]);
    }
  return true;
}

template <int MT, int MP, typename D>
void token_group(const float* x, int64_t num_tokens, const WeightView& w, const D& dec, float* y,
                 int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + 2 * MP <= n_end; n += 2 * MP) {
    if (!tile<MT, MP>(x, w, dec, n, false, y)) {
      quant_rows_scalar(x, num_tokens, w, y, n, n + 2 * MP);
    }
  }
  for (; n < n_end; n += 2) {
    const bool single = n + 1 == n_end;
    if (!tile<MT, 1>(x, w, dec, n, single, y)) {
      quant_rows_scalar(x, num_tokens, w, y, n, std::min(n + 2, n_end));
    }
  }
}

template <typename D>
void rows(const float* x, int64_t num_tokens, const WeightView& w, const D& dec, float* y,
          int64_t n_begin, int64_t n_end) {
  for (int64_t t0 = 0; t0 < num_tokens; t0 += 4) {
    const float* xt = x + t0 * w.cols;
    float* yt = y + t0 * w.rows;
    const int64_t nt = std::min<int64_t>(4, num_tokens - t0);
    switch (nt) {
      case 1:
        token_group<1, 2>(xt, nt, w, dec, yt, n_begin, n_end);
        break;
      case 2:
        token_group<2, 4>(xt, nt, w, dec, yt, n_begin, n_end);
        break;
      case 3:
        token_group<3, 2>(xt, nt, w, dec, yt, n_begin, n_end);
        break;
      default:
        token_group<4, 2>(xt, nt, w, dec, yt, n_begin, n_end);
        break;
    }
  }
}

}  // namespace

void quant_rows_avx512(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       int64_t n_begin, int64_t n_end) {
  if (w.format == WeightFormat::kFp8Block) {
    Fp8Decoder dec{static_cast<const uint8_t*>(w.data), w.row_stride};
    rows(x, num_tokens, w, dec, y, n_begin, n_end);
  } else {
    Int4Decoder dec{static_cast<const uint32_t*>(w.data), w.row_stride};
    rows(x, num_tokens, w, dec, y, n_begin, n_end);
  }
}

}  // namespace epserve::matmul_detail
