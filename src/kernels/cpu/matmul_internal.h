// Internals of matmul shared by the dispatcher (matmul.cpp), the vector kernels
// (matmul_avx2.cpp), the tests and the benchmark.
//
// Every path computes each output y[t, n] in one canonical order, so that its bits do not
// depend on num_tokens, on the other rows of x, on the thread count or on the path:
//   1. eight fp32 lane sums acc[0..7] start at +0;
//   2. for each block b of eight columns, acc[l] = fma(x[t, 8b + l], w[n, 8b + l], acc[l])
//      (one rounding); a last partial block is padded with x = 0 and w = 0;
//   3. y = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])).
// Splitting K into cache blocks only stores and reloads the eight lane sums, which keeps them.
//
// BF16 weights on a CPU with AVX512-BF16 take a second canonical order instead, the one of the
// vdpbf16ps instruction (Intel SDM, VDPBF16PS), on every path and every number of tokens:
//   1. each x[t, k] is rounded to bf16 as vcvtne2ps2bf16 does (bf16_from_f32_rne_daz below:
//      round to nearest even, denormals to signed zero, NaN made quiet);
//   2. sixteen fp32 lane sums acc[0..15] start at +0; for each block b of 32 columns, lane l
//      takes the pair k = 32b + 2l, 32b + 2l + 1, odd element first:
//        acc[l] = dp(x[t, k + 1], w[n, k + 1], acc[l]);  acc[l] = dp(x[t, k], w[n, k], acc[l]);
//      where dp(a, b, c) = ftz(fma(daz(a), daz(b), daz(c))): one rounding to nearest even,
//      denormal inputs read as zero and a denormal result flushed to zero, whatever MXCSR says;
//      a last partial block is padded with x = 0 and w = 0;
//   3. h[l] = acc[l] + acc[l + 8] (l < 8), q[l] = h[l] + h[l + 4] (l < 4), p[l] = q[l] + q[l + 2]
//      (l < 2), y = p[0] + p[1].
// Measured on Zen 4 (tests/unit/kernels/matmul_bf16_test.cpp): the hardware rounds after each
// of the two products, odd first, and flushes as the SDM says.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"

namespace epserve::matmul_detail {

enum class MatmulPath {
  kAuto,    // what matmul() does: GEMV for few tokens, GEMM otherwise; scalar without AVX2+FMA
  kScalar,  // the canonical order in portable C++ (std::fma)
  kGemv,    // AVX2: dot-product tiles of up to kGemvGroupTokens tokens over unpacked weights
  kGemm,    // AVX2: per-lane outer-product tiles over packed fp32 blocks reused across tokens
  // The BF16 canonical order (BF16 weights only; F32 weights run kScalar for these):
  kBf16Scalar,  // in portable C++
  kBf16Gemv,    // AVX512-BF16, rows streamed once in chunks of kGemvRowChunk
  kBf16Gemm,    // AVX512-BF16, rows blocked in L2 and reused by every group of tokens
};

// The path family matmul() uses for weights of this dtype with the current cpu_features():
// kBf16Scalar for BF16 weights on an AVX512-BF16 CPU, else kScalar. Each family's paths give
// the same bits as its scalar member.
MatmulPath canonical_path(DType dtype);
bool in_bf16_family(MatmulPath path);

// matmul() uses the BF16 GEMV path up to this many tokens and the BF16 GEMM path above.
constexpr int64_t kBf16GemvMaxTokens = 16;

// bf16 rounding of vcvtne2ps2bf16: to nearest even, denormals to signed zero, NaN quiet.
inline bf16_t bf16_from_f32_rne_daz(float v) {
  uint32_t bits;
  __builtin_memcpy(&bits, &v, sizeof(bits));
  if ((bits & 0x7f800000u) == 0) return static_cast<bf16_t>((bits >> 16) & 0x8000u);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((bits >> 16) | 0x40u);
  return static_cast<bf16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// One of vdpbf16ps's two steps: fma with denormal inputs read as zero, the result flushed.
inline float bf16_dp_step(float a, float b, float acc) {
  auto daz = [](float v) { return std::fabs(v) < FLT_MIN ? 0.0f : v; };
  const float r = std::fma(daz(a), daz(b), daz(acc));
  return std::fabs(r) < FLT_MIN ? 0.0f * r : r;
}

// Tokens that share one pass over the weights in the GEMV path.
constexpr int64_t kGemvGroupTokens = 4;
// matmul() uses the GEMV path up to this many tokens and the GEMM path above: measured on
// Zen 3 with BF16 weights, the GEMV path (weights read from memory once per chunk of rows, then
// re-read from L2 by every group of 4 tokens) is faster than the GEMM's transposing pack up to
// 64 tokens, which covers an MoE expert's share of a prefill (see docs/benchmarks.md).
constexpr int64_t kGemvMaxTokens = 64;

// The GEMV path takes the weight rows in chunks of this many (a multiple of every tile's row
// count): every group of tokens passes over a chunk before the next one is read, so the
// weights come from memory once however many tokens there are.
constexpr int64_t kGemvRowChunk = 12;

// True when the CPU runs the AVX2 paths (AVX2 and FMA).
bool avx2_available();
// True when the CPU runs the AVX512-BF16 paths.
bool bf16_available();

const char* path_name(MatmulPath path);

// matmul with a chosen path; kGemv and kGemm throw when AVX2 is not available.
void matmul_with_path(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                      MatmulPath path);

// Kernels over output rows [n_begin, n_end): y[t, n] for all t. x is [T, K], y is [T, N].
void rows_scalar(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
                 int64_t n_end);
void gemv_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                    int64_t n_begin, int64_t n_end);
// matmul_untransposed on AVX2, and on AVX-512 for F32 weights (same bits as
// matmul_untransposed_reference).
void untransposed_avx2(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                       float* y, int64_t y_stride);
void untransposed_avx512(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                         float* y, int64_t y_stride);
// The BF16 canonical order over output rows [n_begin, n_end), x already rounded to bf16 with
// rows of x_stride elements (>= K, zero past K). bf16_rows_avx512 takes `row_block` rows at a
// time through every group of tokens (kGemvRowChunk for the GEMV path, more for the GEMM path).
void bf16_rows_scalar(const bf16_t* xb, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                      float* y, int64_t n_begin, int64_t n_end);
void bf16_rows_avx512(const bf16_t* xb, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                      float* y, int64_t n_begin, int64_t n_end, int64_t row_block);
// matmul_with_path for the BF16 family (BF16 weights, non-empty shapes).
void matmul_bf16(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                 MatmulPath path);
// x [T, K] rounded to bf16 into xb [T, x_stride], zeros past K (x_stride a multiple of 32).
void round_to_bf16_avx512(const float* x, int64_t num_tokens, int64_t k_cols, bf16_t* xb,
                          int64_t x_stride);

// The GEMM path packs x once, then runs over output rows on the global thread pool itself.
void gemm_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
               int64_t min_rows_per_thread);

}  // namespace epserve::matmul_detail
