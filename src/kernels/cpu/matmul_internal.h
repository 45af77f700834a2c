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
#pragma once

#include <cstdint>

#include "kernels/cpu/matmul.h"

namespace epserve::matmul_detail {

enum class MatmulPath {
  kAuto,    // what matmul() does: GEMV for few tokens, GEMM otherwise; scalar without AVX2+FMA
  kScalar,  // the canonical order in portable C++ (std::fma)
  kGemv,    // AVX2: dot-product tiles of up to kGemvGroupTokens tokens over unpacked weights
  kGemm,    // AVX2: per-lane outer-product tiles over packed fp32 blocks reused across tokens
};

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

const char* path_name(MatmulPath path);

// matmul with a chosen path; kGemv and kGemm throw when AVX2 is not available.
void matmul_with_path(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                      MatmulPath path);

// Kernels over output rows [n_begin, n_end): y[t, n] for all t. x is [T, K], y is [T, N].
void rows_scalar(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
                 int64_t n_end);
void gemv_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                    int64_t n_begin, int64_t n_end);
// matmul_untransposed on AVX2 (same bits as matmul_untransposed_reference).
void untransposed_avx2(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                       float* y, int64_t y_stride);
// The GEMM path packs x once, then runs over output rows on the global thread pool itself.
void gemm_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
               int64_t min_rows_per_thread);

}  // namespace epserve::matmul_detail
