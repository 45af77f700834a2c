// AVX2 helpers shared by the matmul kernels (include only from *_avx2.cpp files, which are
// compiled with -mavx2 -mfma -mf16c).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace epserve::matmul_detail {

inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}

// Eight BF16 values widened to fp32 (shifted into the high half of each lane).
inline __m256 load8(const bf16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// The first `count` (< 8) elements at p, the other lanes zero.
template <typename T>
inline __m256 load_tail(const T* p, int64_t count) {
  T buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(T));
  return load8(buf);
}

// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as rows_scalar computes it.
inline float reduce8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace epserve::matmul_detail
