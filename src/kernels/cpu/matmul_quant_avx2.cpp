// AVX2 + FMA path of the block-scaled matmul (matmul_quant.h): tiles of MT tokens x MN weight
// rows; every eight columns of a row are decoded once into fp32 (e4m3 bits moved into an fp16,
// widened and multiplied by scale x 2^8, or a nibble shifted out of its int32 word and scaled) and
// used by every token of the tile. Same bits as quant_rows_scalar.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

// A row's codes from column c (absolute) on: base pointers per row are taken once per tile.
struct Fp8Decoder {
  using Code = uint8_t;
  static constexpr int64_t kCodesPerStep = 8;      // codes read per eight columns
  static constexpr int64_t kPrefetchColumns = 64;  // one cache line of a row
  const uint8_t* data;
  int64_t row_stride;

  const uint8_t* row(int64_t r, int64_t c) const { return data + r * row_stride + c; }
  // e4m3 s eeee mmm is moved into fp16 bits (s, 0eeee, mmm0000000): an fp16 worth exactly
  // fp8 * 2^-8, subnormal codes included (fp16 subnormals, which the F16C conversion takes without
  // the fp32 denormal penalty). The scale is multiplied by 2^8 (exact below 2^119), so the product
  // is the exact fp8 * scale rounded once, as the scalar definition.
  static float prepare_scale(float s) { return s * 256.0f; }
  static bool scale_ok(float s) { return std::fabs(s) < 0x1p100f; }
  static __m256 decode(const uint8_t* p, __m256 scale) {
    __m128i v = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    v = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(v, 8), 1),
                      _mm_set1_epi16(static_cast<short>(0xbf80)));
    return _mm256_mul_ps(_mm256_cvtph_ps(v), scale);
  }
};

struct Int4Decoder {
  static constexpr int64_t kCodesPerStep = 4;       // bytes of one int32 word
  static constexpr int64_t kPrefetchColumns = 128;  // one cache line of a row
  const uint32_t* data;
  int64_t row_stride;  // nibbles

  const uint8_t* row(int64_t r, int64_t c) const {
    return reinterpret_cast<const uint8_t*>(data + (r * row_stride + c) / 8);
  }
  static float prepare_scale(float s) { return s; }
  // -8 s must not overflow (|s| >= 2^124 takes the scalar definition).
  static bool scale_ok(float s) { return std::fabs(s) < 0x1p124f; }
  // (nibble - 8) * s as fma(nibble, s, -8 s): both exact, so one rounding of an exact value.
  static __m256 decode(const uint8_t* p, __m256 scale) {
    int word;
    std::memcpy(&word, p, 4);
    __m256i v = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(word), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
        _mm256_set1_epi32(0xf));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), scale,
                           _mm256_mul_ps(scale, _mm256_set1_ps(-8.0f)));
  }
};

inline float scale_value(const WeightView& w, int64_t block_row, int64_t block_col) {
  const int64_t i = block_row * w.scale_stride + block_col;
  return w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                      : static_cast<const float*>(w.scales)[i];
}

// y[t, n] for MT tokens x MN rows starting at view row n. Returns false (nothing written) when a
// scale is too large for the folded FP8 decode; the caller then takes the scalar definition.
template <int MT, int MN, typename D>
bool tile(const float* x, const WeightView& w, const D& dec, int64_t n, float* y) {
  __m256 acc[MT][MN];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int i = 0; i < MN; ++i) acc[t][i] = _mm256_setzero_ps();
  const uint8_t* rows[MN];
#pragma GCC unroll 16
  for (int i = 0; i < MN; ++i) rows[i] = dec.row(w.row0 + n + i, w.col0);
  const int64_t full = w.cols / 8 * 8;
  int64_t k = 0;
  while (k < full) {
    const int64_t bc = (w.col0 + k) / w.block_cols;
    const int64_t block_end = std::min(full, (bc + 1) * w.block_cols - w.col0);
    __m256 scale[MN];
#pragma GCC unroll 16
    for (int i = 0; i < MN; ++i) {
      const float s = scale_value(w, (w.row0 + n + i) / w.block_rows, bc);
      if (!D::scale_ok(s)) return false;
      scale[i] = _mm256_set1_ps(D::prepare_scale(s));
    }
    for (; k < block_end; k += 8) {
      const int64_t step = k / 8 * D::kCodesPerStep;
      if (((w.col0 + k) & (D::kPrefetchColumns - 1)) == 0) {
#pragma GCC unroll 16
        for (int i = 0; i < MN; ++i) {
          _mm_prefetch(reinterpret_cast<const char*>(rows[i] + step) + 512, _MM_HINT_T0);
        }
      }
      __m256 xv[MT];
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) xv[t] = _mm256_loadu_ps(x + t * w.cols + k);
#pragma GCC unroll 16
      for (int i = 0; i < MN; ++i) {
        __m256 wv = D::decode(rows[i] + step, scale[i]);
#pragma GCC unroll 16
        for (int t = 0; t < MT; ++t) acc[t][i] = _mm256_fmadd_ps(xv[t], wv, acc[t][i]);
      }
    }
  }
  if (k < w.cols) {
    // The last partial block: decoded one value at a time, x and w zero past the end.
    const int64_t rest = w.cols - k;
    __m256 xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = load_tail(x + t * w.cols + k, rest);
    for (int i = 0; i < MN; ++i) {
      float buf[8] = {};
      for (int64_t l = 0; l < rest; ++l) buf[l] = quant_weight_at(w, n + i, k + l);
      __m256 wv = _mm256_loadu_ps(buf);
      for (int t = 0; t < MT; ++t) acc[t][i] = _mm256_fmadd_ps(xv[t], wv, acc[t][i]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int i = 0; i < MN; ++i) y[t * w.rows + n + i] = reduce8(acc[t][i]);
  return true;
}

template <int MT, int MN, typename D>
void token_group(const float* x, int64_t num_tokens, const WeightView& w, const D& dec, float* y,
                 int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + MN <= n_end; n += MN) {
    if (!tile<MT, MN>(x, w, dec, n, y)) quant_rows_scalar(x, num_tokens, w, y, n, n + MN);
  }
  for (; n < n_end; ++n) {
    if (!tile<MT, 1>(x, w, dec, n, y)) quant_rows_scalar(x, num_tokens, w, y, n, n + 1);
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
        token_group<1, 4>(xt, nt, w, dec, yt, n_begin, n_end);
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

void quant_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
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
