// Block-scaled weight formats that matmul decodes inside the kernel (the weights stay quantized
// in memory):
//  - kFp8Block: DeepSeek-V3's FP8. data is float8_e4m3fn [N, K] (row_stride bytes apart), scales
//    fp32 [ceil(N / block_rows), ceil(K / block_cols)] (the checkpoint's `weight_scale_inv`);
//    w[n, k] = fp32(e4m3 value) * scale, one fp32 rounding.
//  - kInt4Group: compressed-tensors `pack-quantized` INT4, symmetric. data is int32 words of
//    eight 4-bit values, lowest bits first, each stored as value + 8 (so unsigned): element
//    (n, k) is nibble k % 8 of word n * row_stride / 8 + k / 8; scales [N, ceil(K / group)] BF16
//    or F32 (block_rows = 1, block_cols = group); w[n, k] = (nibble - 8) * scale (exact in fp32).
//
// The canonical order (matmul_internal.h) is kept with w[n, k] replaced by that fp32 value: a
// quantized matmul gives the same bits as a plain F32 matmul over the dequantised matrix, on every
// path, for any token count, thread count or row/column slice. quant_rows_scalar is the
// definition; the AVX2 and AVX-512 paths are tested against it bit for bit.
//
// FP8 e4m3fn has no infinities; its NaN codes (0x7f, 0xff) decode as +-480 on every path (the
// block cast DeepSeek describes never writes them: |w / scale| <= 448).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/cpu/matmul.h"

namespace epserve {

float fp8_e4m3_to_f32(uint8_t bits);
// Round to nearest e4m3fn value, saturating at +-448 (what make-model's cast writes).
uint8_t f32_to_fp8_e4m3(float v);

// A view of a whole FP8 block-scaled matrix [rows, cols]: weight F8_E4M3 [rows, cols], scale_inv
// F32 [ceil(rows / block_rows), ceil(cols / block_cols)]. Throws when shapes or dtypes disagree.
WeightView fp8_block_view(const Tensor& weight, const Tensor& scale_inv, int64_t block_rows,
                          int64_t block_cols);
// A view of a whole packed INT4 matrix [rows, cols]: packed I32 [rows, ceil(cols / 8)], scale
// BF16 or F32 [rows, ceil(cols / group)].
WeightView int4_group_view(const Tensor& packed, const Tensor& scale, int64_t rows, int64_t cols,
                           int64_t group);

// The dequantised fp32 value of element (row, col) of the view (the canonical weight value).
float quant_weight_at(const WeightView& w, int64_t row, int64_t col);

// Bytes the view's rows take in memory: quantized values plus their scales.
int64_t weight_bytes(const WeightView& w);

// y[T, N] = x[T, K] · W^T for a block-scaled W; `scalar` forces the scalar definition.
void quant_matmul(const float* x, int64_t num_tokens, const WeightView& w, float* y, bool scalar);

namespace matmul_detail {

// Output rows [n_begin, n_end) for all tokens, in the canonical order.
void quant_rows_scalar(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       int64_t n_begin, int64_t n_end);
// True when the AVX2 path takes this view (AVX2 present, 8-column aligned slice and blocks).
bool quant_vector_ok(const WeightView& w);
void quant_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                     int64_t n_begin, int64_t n_end);
// AVX-512 F/BW/VL/DQ: two weight rows per zmm. Call only when cpu_has_avx512() and
// quant_vector_ok(w).
void quant_rows_avx512(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       int64_t n_begin, int64_t n_end);

using QuantRowsFn = void (*)(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                             int64_t n_begin, int64_t n_end);
// quant_matmul with a chosen row kernel, on the global thread pool (tests, benchmark).
void quant_matmul_with(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       QuantRowsFn kernel);

}  // namespace matmul_detail
}  // namespace epserve
