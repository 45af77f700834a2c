// AVX512-VNNI path of the INT4-A8 order (matmul_quant.h). 64 bytes of a packed row are 128
// columns: the low nibbles are the even columns and the high nibbles the odd ones, and dword
// lane l holds the eight columns of word l. Two vpdpbusd per token (unsigned nibbles 0..15 times
// the token's int8 values, laid out to match, starting from -8 x the lane's sum of x) give each
// lane's exact sum of (nibble - 8) x q; it is converted to fp32 and added with one fma scaled by
// the group scales. Tiles: MT tokens x MR rows (8 for one token). The next tile's rows and
// scales are prefetched while a tile runs. From three tokens on, each block of rows is unpacked
// once (nibbles and lane scales into a per-thread buffer) by the first group of tokens, and
// every later group reads it from there.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "core/error.h"
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

// Where a tile takes its weights: kCodes unpacks the packed words and reads the scales,
// kStore also writes what it unpacked (per row and chunk: low nibbles, high nibbles, lane
// scales, 64 bytes each) to `dec`, kDecoded reads what an earlier tile wrote there.
enum class Source { kCodes, kStore, kDecoded };

constexpr int64_t kDecodedChunkBytes = 192;

// y for MT tokens from t0 x MR rows from n. dec holds row n's unpacked chunks.
template <int MT, int MR, Source kFrom>
void tile(const Int8Activations& xa, const WeightView& w, char* dec, float* y, int64_t t0,
          int64_t n) {
  const uint32_t* rows[MR];
  int64_t srow[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    rows[r] = static_cast<const uint32_t*>(w.data) + ((w.row0 + n + r) * w.row_stride + w.col0) / 8;
    srow[r] = (w.row0 + n + r) * w.scale_stride;
  }
  const int64_t next_tile = MR * w.row_stride / 8;  // words
  if constexpr (kFrom != Source::kDecoded) {
    // The scales of the next tile's rows (a stream of their own, 2 bytes per 32 weights).
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
      char* d = dec + (r * xa.chunks + c) * kDecodedChunkBytes;
      __m512i lo, hi;
      __m512 sw;
      if constexpr (kFrom == Source::kDecoded) {
        lo = _mm512_load_si512(d);
        hi = _mm512_load_si512(d + 64);
        sw = _mm512_load_ps(d + 128);
      } else {
        // The same columns of the next tile's rows (as the FP8-BF16 kernel).
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c * 16 + next_tile), _MM_HINT_T0);
        const __m512i v = lanes == 16 ? _mm512_loadu_si512(rows[r] + c * 16)
                                      : _mm512_maskz_loadu_epi32(valid, rows[r] + c * 16);
        lo = _mm512_and_si512(v, low4);
        hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        sw = lane_scales(w, srow[r], k, lanes);
        if constexpr (kFrom == Source::kStore) {
          _mm512_store_si512(d, lo);
          _mm512_store_si512(d + 64, hi);
          _mm512_store_ps(d + 128, sw);
        }
      }
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

// Rows [n0, n1) for MT tokens from t0: MR rows per tile, then single rows. dec holds row n0's.
template <int MT, int MR, Source kFrom>
void token_group(const Int8Activations& xa, const WeightView& w, char* dec, float* y, int64_t t0,
                 int64_t n0, int64_t n1) {
  const int64_t row_bytes = xa.chunks * kDecodedChunkBytes;
  int64_t n = n0;
  for (; n + MR <= n1; n += MR) tile<MT, MR, kFrom>(xa, w, dec + (n - n0) * row_bytes, y, t0, n);
  for (; n < n1; ++n) tile<MT, 1, kFrom>(xa, w, dec + (n - n0) * row_bytes, y, t0, n);
}

// A group of `count` tokens (1..4) from t0 over rows [n0, n1).
template <Source kFrom>
void group(const Int8Activations& xa, const WeightView& w, char* dec, float* y, int64_t t0,
           int64_t count, int64_t n0, int64_t n1) {
  switch (count) {
    case 1:
      token_group<1, 8, kFrom>(xa, w, dec, y, t0, n0, n1);
      break;
    case 2:
      token_group<2, 4, kFrom>(xa, w, dec, y, t0, n0, n1);
      break;
    case 3:
      token_group<3, 2, kFrom>(xa, w, dec, y, t0, n0, n1);
      break;
    default:
      token_group<4, 2, kFrom>(xa, w, dec, y, t0, n0, n1);
      break;
  }
}

char* decoded_rows(int64_t bytes) {
  static thread_local std::unique_ptr<char, void (*)(void*)> buffer{nullptr, std::free};
  static thread_local int64_t capacity = 0;
  if (bytes > capacity) {
    auto* p = static_cast<char*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
    EPS_CHECK(p != nullptr, "matmul: out of memory for {} bytes of unpacked weights", bytes);
    buffer.reset(p);
    capacity = bytes;
  }
  return buffer.get();
}

// Measured on Zen 5 (quant_matmul_bench, 1 thread): from three tokens on, 2 x 4 tiles over
// unpacked rows beat 3 x 2 and 4 x 2 tiles over the packed words (their token operands alone
// take 16 registers) and 4 x 1, 2 x 2 and 1 x 8 over unpacked rows.
constexpr int64_t kDirectTokens = 2;
constexpr int64_t kRowBlock = 8;  // 8 x 1.5 KB of unpacked chunks per 1024 columns
constexpr int64_t kGroup = 2;     // tokens per tile over the unpacked rows, first group included

}  // namespace

void int4_a8_quantize_avx512vnni(const float* x, int64_t cols, int64_t chunks, int8_t* q,
                                 float* group_scale, int8_t* packed, int32_t* offset,
                                 float* lane_scale) {
  const int64_t groups = (cols + 31) / 32;
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k0 = g * 32, n = std::min<int64_t>(32, cols - k0);
    const auto m0 = static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1);
    const auto m1 = static_cast<__mmask16>(n >= 32 ? 0xffffu : n > 16 ? (1u << (n - 16)) - 1 : 0);
    const __m512 a = _mm512_maskz_loadu_ps(m0, x + k0);
    const __m512 b = _mm512_maskz_loadu_ps(m1, x + k0 + 16);
    // vmaxps returns its second operand when the first is NaN: NaNs are skipped, as in the
    // definition's a > amax ? a : amax.
    __m512 m = _mm512_max_ps(_mm512_and_ps(a, magnitude), _mm512_setzero_ps());
    m = _mm512_max_ps(_mm512_and_ps(b, magnitude), m);
    const float amax = _mm512_reduce_max_ps(m);
    const float d = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    group_scale[g] = d;
    auto quantize = [&](__m512 v) {
      v = _mm512_mul_ps(v, inv);
      v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);  // NaN -> 0
      v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
      return _mm512_cvtepi32_epi8(
          _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    };
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k0), quantize(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k0 + 16), quantize(b));
  }
  std::fill(q + groups * 32, q + chunks * 128, int8_t{0});
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i lane_group = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t c = 0; c < chunks; ++c) {
    // As 16-bit words, q's low bytes are its even columns and the high bytes the odd ones.
    const __m512i v0 = _mm512_loadu_si512(q + c * 128);
    const __m512i v1 = _mm512_loadu_si512(q + c * 128 + 64);
    const __m512i even = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(v0)),
                                            _mm512_cvtepi16_epi8(v1), 1);
    const __m512i odd =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(v0, 8))),
                           _mm512_cvtepi16_epi8(_mm512_srli_epi16(v1, 8)), 1);
    _mm512_store_si512(packed + c * 128, even);
    _mm512_store_si512(packed + c * 128 + 64, odd);
    const __m512i sum =
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, even), ones, odd);
    _mm512_store_si512(offset + c * 16,
                       _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3)));
    const int64_t lanes = std::min<int64_t>(16, (cols - c * 128 + 7) / 8);
    const int64_t chunk_groups = std::min<int64_t>(4, groups - c * 4);
    const __m512 s = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << chunk_groups) - 1),
                                           group_scale + c * 4);
    _mm512_store_ps(
        lane_scale + c * 16,
        _mm512_maskz_permutexvar_ps(static_cast<__mmask16>((1u << lanes) - 1), lane_group, s));
  }
}

void int4_a8_rows_avx512vnni(const Int8Activations& xa, const WeightView& w, float* y,
                             int64_t n_begin, int64_t n_end) {
  if (xa.num_tokens <= kDirectTokens) {
    group<Source::kCodes>(xa, w, nullptr, y, 0, xa.num_tokens, n_begin, n_end);
    return;
  }
  // Blocks of kRowBlock rows: the first kGroup tokens unpack them from memory and keep them,
  // every later group of tokens reuses them.
  char* dec = decoded_rows(kRowBlock * xa.chunks * kDecodedChunkBytes);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kRowBlock) {
    const int64_t n1 = std::min(n_end, n0 + kRowBlock);
    group<Source::kStore>(xa, w, dec, y, 0, kGroup, n0, n1);
    int64_t t0 = kGroup;
    for (; t0 + kGroup <= xa.num_tokens; t0 += kGroup)
      token_group<kGroup, 4, Source::kDecoded>(xa, w, dec, y, t0, n0, n1);
    if (t0 < xa.num_tokens) group<Source::kDecoded>(xa, w, dec, y, t0, xa.num_tokens - t0, n0, n1);
  }
}

}  // namespace epserve::matmul_detail
