// AVX2 + FMA path of the block-scaled matmul (matmul_quant.h): tiles of MT tokens x MN weight
// rows; every eight columns of a row are decoded once into fp32 (e4m3 bits moved into an fp32
// and rescaled by 2^120, or a nibble shifted out of its int32 word) and multiplied by the block
// scale, then used by every token of the tile. Same bits as quant_rows_scalar.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_quant.h"

namespace epserve::matmul_detail {
namespace {

struct Fp8Decoder {
  const uint8_t* data;
  int64_t row_stride;
  __m256i magnitude_mask = _mm256_set1_epi32(0x7f);
  __m256i sign_mask = _mm256_set1_epi32(0x80);
  __m256 exponent_shift = _mm256_set1_ps(0x1p120f);

  // Eight values of row r (absolute) from column c (absolute), times scale.
  __m256 decode(int64_t r, int64_t c, __m256 scale) const {
    const uint8_t* p = data + r * row_stride + c;
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    __m256i mag = _mm256_slli_epi32(_mm256_and_si256(v, magnitude_mask), 20);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, sign_mask), 24);
    __m256 f = _mm256_castsi256_ps(_mm256_or_si256(mag, sign));
    return _mm256_mul_ps(_mm256_mul_ps(f, exponent_shift), scale);
  }
  void prefetch(int64_t r, int64_t c) const {
    _mm_prefetch(reinterpret_cast<const char*>(data + r * row_stride + c) + 512, _MM_HINT_T0);
  }
  static constexpr int64_t kPrefetchColumns = 64;  // one cache line of a row
};

struct Int4Decoder {
  const uint32_t* data;
  int64_t row_stride;  // nibbles
  __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  __m256i nibble_mask = _mm256_set1_epi32(0xf);
  __m256 offset = _mm256_set1_ps(8.0f);

  __m256 decode(int64_t r, int64_t c, __m256 scale) const {
    const uint32_t word = data[(r * row_stride + c) / 8];
    __m256i v = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts), nibble_mask);
    // nibble - 8 is exact in fp32, and so is its product with a BF16 scale.
    __m256 f = _mm256_sub_ps(_mm256_cvtepi32_ps(v), offset);
    return _mm256_mul_ps(f, scale);
  }
  void prefetch(int64_t r, int64_t c) const {
    _mm_prefetch(reinterpret_cast<const char*>(data + (r * row_stride + c) / 8) + 512, _MM_HINT_T0);
  }
  static constexpr int64_t kPrefetchColumns = 128;  // one cache line of a row
};

inline __m256 broadcast_scale(const WeightView& w, int64_t block_row, int64_t block_col) {
  const int64_t i = block_row * w.scale_stride + block_col;
  float s = w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                         : static_cast<const float*>(w.scales)[i];
  return _mm256_set1_ps(s);
}

// y[t, n] for MT tokens x MN rows starting at view row n.
template <int MT, int MN, typename D>
void tile(const float* x, const WeightView& w, const D& dec, int64_t n, float* y) {
  __m256 acc[MT][MN];
  for (int t = 0; t < MT; ++t)
    for (int i = 0; i < MN; ++i) acc[t][i] = _mm256_setzero_ps();
  const int64_t full = w.cols / 8 * 8;
  int64_t k = 0;
  while (k < full) {
    // The columns up to the end of the current scale block.
    const int64_t bc = (w.col0 + k) / w.block_cols;
    const int64_t block_end = std::min(full, (bc + 1) * w.block_cols - w.col0);
    __m256 scale[MN];
    for (int i = 0; i < MN; ++i) scale[i] = broadcast_scale(w, (w.row0 + n + i) / w.block_rows, bc);
    for (; k < block_end; k += 8) {
      if ((w.col0 + k) % D::kPrefetchColumns == 0) {
        for (int i = 0; i < MN; ++i) dec.prefetch(w.row0 + n + i, w.col0 + k);
      }
      __m256 xv[MT];
      for (int t = 0; t < MT; ++t) xv[t] = _mm256_loadu_ps(x + t * w.cols + k);
      for (int i = 0; i < MN; ++i) {
        __m256 wv = dec.decode(w.row0 + n + i, w.col0 + k, scale[i]);
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
  for (int t = 0; t < MT; ++t)
    for (int i = 0; i < MN; ++i) y[t * w.rows + n + i] = reduce8(acc[t][i]);
}

template <int MT, int MN, typename D>
void token_group(const float* x, const WeightView& w, const D& dec, float* y, int64_t n_begin,
                 int64_t n_end) {
  int64_t n = n_begin;
  for (; n + MN <= n_end; n += MN) tile<MT, MN>(x, w, dec, n, y);
  for (; n < n_end; ++n) tile<MT, 1>(x, w, dec, n, y);
}

template <typename D>
void rows(const float* x, int64_t num_tokens, const WeightView& w, const D& dec, float* y,
          int64_t n_begin, int64_t n_end) {
  for (int64_t t0 = 0; t0 < num_tokens; t0 += 4) {
    const float* xt = x + t0 * w.cols;
    float* yt = y + t0 * w.rows;
    switch (std::min<int64_t>(4, num_tokens - t0)) {
      case 1:
        token_group<1, 8>(xt, w, dec, yt, n_begin, n_end);
        break;
      case 2:
        token_group<2, 4>(xt, w, dec, yt, n_begin, n_end);
        break;
      case 3:
        token_group<3, 2>(xt, w, dec, yt, n_begin, n_end);
        break;
      default:
        token_group<4, 2>(xt, w, dec, yt, n_begin, n_end);
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
