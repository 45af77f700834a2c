// Matrix multiplication of fp32 activations with stored weights: y[T, N] = x[T, K] · W[N, K]^T.
// W is BF16 or F32 (the dtypes the loader returns for matmul weights), row-major with a row
// stride, so a tensor-parallel shard of W (a range of rows, or a range of columns) is a view,
// not a copy. matmul picks the fastest path for the CPU at run time (cpu_features.h): BF16 weights
// on a CPU with AVX512-BF16 take vdpbf16ps, which rounds x to bf16 first (the BF16 order of
// matmul_internal.h), everything else the fp32 order; matmul_reference is the exact product in
// double that every path is held to within its rounding bound.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace epserve {

// How the weight values are stored: plain BF16/F32, or one of the block-scaled formats of
// kernels/cpu/matmul_quant.h (decoded inside the kernel; the fields below the line apply).
enum class WeightFormat : uint8_t { kDense, kFp8Block, kInt4Group };

struct WeightView {
  DType dtype = DType::F32;  // BF16 or F32 (kDense); F8_E4M3 (kFp8Block); I32 (kInt4Group)
  const void* data = nullptr;
  int64_t rows = 0;        // N: output features
  int64_t cols = 0;        // K: input features
  int64_t row_stride = 0;  // elements between consecutive rows (>= cols; nibbles for kInt4Group)
  // Block-scaled formats only: data and scales describe the whole stored matrix, and the view is
  // its rows [row0, row0 + rows) and columns [col0, col0 + cols); element (r, c) has the scale
  // scales[(row0 + r) / block_rows, (col0 + c) / block_cols] (scale_stride apart per block row).
  WeightFormat format = WeightFormat::kDense;
  const void* scales = nullptr;
  DType scale_dtype = DType::F32;  // F32 (FP8 scale_inv) or BF16/F32 (INT4 weight_scale)
  int64_t scale_stride = 0;
  int64_t block_rows = 1;
  int64_t block_cols = 1;
  int64_t row0 = 0;
  int64_t col0 = 0;

  // The whole 2-D tensor [N, K].
  static WeightView of(const Tensor& t);
  // Rows [begin, end): output features begin..end.
  WeightView row_slice(int64_t begin, int64_t end) const;
  // Columns [begin, end): input features begin..end.
  WeightView col_slice(int64_t begin, int64_t end) const;
  float at(int64_t row, int64_t col) const;
};

// y[T, N] = x[T, K] · W^T. x is contiguous with row stride K; y contiguous with row stride N.
void matmul(const float* x, int64_t num_tokens, const WeightView& w, float* y);
void matmul_reference(const float* x, int64_t num_tokens, const WeightView& w, float* y);
// matmul in the fp32 canonical order whatever the CPU (no rounding of x to bf16): for the small
// MoE router, whose outputs pick experts, a discrete choice that bf16 rounding would flip.
void matmul_fp32_order(const float* x, int64_t num_tokens, const WeightView& w, float* y);

// y[T, K] = x[T, N] · W[N, K]: W used without transposing (each output is a sum of W's rows
// scaled by x). MLA uses it to absorb W_uk into the query, one head at a time. Each output is
// one fp32 chain over N in order, y[t, k] = fma(x[t, N-1], w[N-1, k], ... fma(x[t, 0], w[0, k],
// +0)), on every path. x rows are x_stride floats apart, y rows y_stride. Runs on the calling
// thread (callers parallelise over heads).
void matmul_untransposed(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                         float* y, int64_t y_stride);
// The scalar definition the vector path is tested against.
void matmul_untransposed_reference(const float* x, int64_t x_stride, int64_t num_tokens,
                                   const WeightView& w, float* y, int64_t y_stride);
inline void matmul_untransposed(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  matmul_untransposed(x, w.rows, num_tokens, w, y, w.cols);
}

}  // namespace epserve
