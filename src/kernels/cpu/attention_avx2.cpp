// AVX2 + FMA attention steps in the canonical order of attention_internal.h: register tiles of
// four query heads by three keys for the scores, four heads by 24 output floats for the
// probability-weighted sum, both over chunks of keys that stay in cache. Tiles only choose which
// lane sums live in registers together; each one sees the same operations as in the scalar
// definition.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/exp_avx2.h"
#include "kernels/cpu/matmul_avx2.h"

namespace epserve::attention_detail {
namespace {

using matmul_detail::reduce8;

// Lanes l < count all ones, the others zero.
inline __m256i tail_mask(int64_t count) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes);
}

// Lane sums of RT query rows against KT keys over one part of the vectors.
template <int RT, int KT>
inline void dot_part(const float* q, int64_t q_stride, int64_t dim, const float* const (&k)[KT],
                     int64_t k_offset, __m256 (&acc)[RT][KT]) {
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    __m256 qv[RT];
#pragma GCC unroll 4
    for (int r = 0; r < RT; ++r) qv[r] = _mm256_loadu_ps(q + r * q_stride + d);
#pragma GCC unroll 4
    for (int j = 0; j < KT; ++j) {
      __m256 kv = _mm256_loadu_ps(k[j] + k_offset + d);
#pragma GCC unroll 4
      for (int r = 0; r < RT; ++r) acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
    }
  }
  if (d < dim) {
    __m256i mask = tail_mask(dim - d);
    __m256 qv[RT];
    for (int r = 0; r < RT; ++r) qv[r] = _mm256_maskload_ps(q + r * q_stride + d, mask);
    for (int j = 0; j < KT; ++j) {
      __m256 kv = _mm256_maskload_ps(k[j] + k_offset + d, mask);
      for (int r = 0; r < RT; ++r) acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
    }
  }
}

template <int RT, int KT>
inline void scores_tile(const QueryRows& q, int64_t r0, const SlotRows& keys, int64_t s0,
                        float scale, float* scores, int64_t ld) {
  const float* k[KT];
  for (int j = 0; j < KT; ++j) k[j] = keys.row(s0 + j);
  __m256 acc[RT][KT];
  for (int r = 0; r < RT; ++r)
    for (int j = 0; j < KT; ++j) acc[r][j] = _mm256_setzero_ps();
  dot_part<RT, KT>(q.part1 + r0 * q.stride1, q.stride1, q.dim1, k, 0, acc);
  if (q.dim2 > 0) dot_part<RT, KT>(q.part2 + r0 * q.stride2, q.stride2, q.dim2, k, q.dim1, acc);
  for (int r = 0; r < RT; ++r)
    for (int j = 0; j < KT; ++j) scores[(r0 + r) * ld + s0 + j] = reduce8(acc[r][j]) * scale;
}

template <int RT>
void scores_rows(const QueryRows& q, int64_t r0, const SlotRows& keys, int64_t s0, int64_t s1,
                 float scale, float* scores, int64_t ld) {
  int64_t s = s0;
  for (; s + 3 <= s1; s += 3) scores_tile<RT, 3>(q, r0, keys, s, scale, scores, ld);
  for (; s < s1; ++s) scores_tile<RT, 1>(q, r0, keys, s, scale, scores, ld);
}

// Eight floats at p, or with kMasked only the lanes of `mask` (the others zero).
template <bool kMasked>
inline __m256 load_lanes(const float* p, __m256i mask) {
  if constexpr (kMasked) {
    return _mm256_maskload_ps(p, mask);
  } else {
    return _mm256_loadu_ps(p);
  }
}

template <bool kMasked>
inline void store_lanes(float* p, __m256i mask, __m256 v) {
  if constexpr (kMasked) {
    _mm256_maskstore_ps(p, mask, v);
  } else {
    _mm256_storeu_ps(p, v);
  }
}

// Output floats [d0, d0 + 8 * VT) of RT rows over keys [s0, s1) (with kMasked, VT is 1 and only
// the lanes of `mask` exist); the sums start at zero for s0 = 0 and go on from `out` otherwise.
template <int RT, int VT, bool kMasked>
inline void weighted_sum_tile(const float* p, int64_t ld, const SlotRows& values, int64_t s0,
                              int64_t s1, int64_t d0, __m256i mask, float* out,
                              int64_t out_stride) {
  static_assert(!kMasked || VT == 1);
  __m256 acc[RT][VT];
#pragma GCC unroll 4
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < VT; ++j) {
      acc[r][j] = s0 == 0 ? _mm256_setzero_ps()
                          : load_lanes<kMasked>(out + r * out_stride + d0 + 8 * j, mask);
    }
  const float* base = values.base + d0;
  for (int64_t s = s0; s < s1; ++s) {
    const float* v = base + values.slots[s] * values.stride;
    __m256 vv[VT];
#pragma GCC unroll 4
    for (int j = 0; j < VT; ++j) vv[j] = load_lanes<kMasked>(v + 8 * j, mask);
#pragma GCC unroll 4
    for (int r = 0; r < RT; ++r) {
      __m256 w = _mm256_broadcast_ss(p + r * ld + s);
#pragma GCC unroll 4
      for (int j = 0; j < VT; ++j) acc[r][j] = _mm256_fmadd_ps(w, vv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < VT; ++j) {
      store_lanes<kMasked>(out + r * out_stride + d0 + 8 * j, mask, acc[r][j]);
    }
}

template <int RT>
void weighted_sum_rows(const float* p, int64_t ld, const SlotRows& values, int64_t s0, int64_t s1,
                       int64_t dim, float* out, int64_t out_stride) {
  const __m256i all = _mm256_set1_epi32(-1);
  int64_t d = 0;
  for (; d + 24 <= dim; d += 24) {
    weighted_sum_tile<RT, 3, false>(p, ld, values, s0, s1, d, all, out, out_stride);
  }
  for (; d + 8 <= dim; d += 8) {
    weighted_sum_tile<RT, 1, false>(p, ld, values, s0, s1, d, all, out, out_stride);
  }
  if (d < dim) {
    weighted_sum_tile<RT, 1, true>(p, ld, values, s0, s1, d, tail_mask(dim - d), out, out_stride);
  }
}

}  // namespace

void scores_avx2(const QueryRows& q, int64_t rows, const SlotRows& keys, int64_t len, float scale,
                 float* scores, int64_t ld) {
  // Key tiles outside, head tiles inside: a tile's key rows stay in L1 for all heads.
  constexpr int64_t kKeyChunk = 24;
  for (int64_t s0 = 0; s0 < len; s0 += kKeyChunk) {
    int64_t s1 = std::min(len, s0 + kKeyChunk);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) scores_rows<4>(q, r, keys, s0, s1, scale, scores, ld);
    switch (rows - r) {
      case 3:
        scores_rows<3>(q, r, keys, s0, s1, scale, scores, ld);
        break;
      case 2:
        scores_rows<2>(q, r, keys, s0, s1, scale, scores, ld);
        break;
      case 1:
        scores_rows<1>(q, r, keys, s0, s1, scale, scores, ld);
        break;
      default:
        break;
    }
  }
}

void softmax_rows_avx2(float* scores, int64_t ld, int64_t rows, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    float* x = scores + r * ld;
    __m256 mv = _mm256_set1_ps(x[0]);
    int64_t s = 0;
    for (; s + 8 <= len; s += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + s));
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float m = lanes[0];
    for (int l = 1; l < 8; ++l) m = lanes[l] > m ? lanes[l] : m;
    for (; s < len; ++s) m = x[s] > m ? x[s] : m;
    const __m256 vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    for (s = 0; s + 8 <= len; s += 8) {
      __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + s), vm));
      _mm256_storeu_ps(x + s, e);
      acc = _mm256_add_ps(acc, e);
    }
    __m256i mask = tail_mask(len - s);
    if (s < len) {
      __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + s, mask), vm));
      e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
      _mm256_maskstore_ps(x + s, mask, e);
      acc = _mm256_add_ps(acc, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / reduce8(acc));
    for (s = 0; s + 8 <= len; s += 8) {
      _mm256_storeu_ps(x + s, _mm256_mul_ps(_mm256_loadu_ps(x + s), inv));
    }
    if (s < len) {
      _mm256_maskstore_ps(x + s, mask, _mm256_mul_ps(_mm256_maskload_ps(x + s, mask), inv));
    }
  }
}

void weighted_sum_avx2(const float* p, int64_t ld, int64_t rows, const SlotRows& values,
                       int64_t len, int64_t dim, float* out, int64_t out_stride) {
  // Keys in chunks whose value rows stay in L2 while every tile passes over them; the sums are
  // stored and reloaded between chunks, which keeps each one a single chain in key order.
  constexpr int64_t kKeyChunk = 128;
  for (int64_t s0 = 0; s0 < len; s0 += kKeyChunk) {
    const int64_t s1 = std::min(len, s0 + kKeyChunk);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      weighted_sum_rows<4>(p + r * ld, ld, values, s0, s1, dim, out + r * out_stride, out_stride);
    }
    for (; r < rows; ++r) {
      weighted_sum_rows<1>(p + r * ld, ld, values, s0, s1, dim, out + r * out_stride, out_stride);
    }
  }
}

}  // namespace epserve::attention_detail
