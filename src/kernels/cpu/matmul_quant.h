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
// The fp32 order (matmul_internal.h) with w[n, k] replaced by that fp32 value gives the same bits
// as a plain F32 matmul over the dequantised matrix, on every path, for any token count, thread
// count or row/column slice. quant_rows_scalar is its definition; the AVX2 and AVX-512 paths are
// tested against it bit for bit. It is what EPSERVE_CPU_FEATURES=scalar/avx2/avx512 runs. On a
// CPU with AVX512-BF16 (FP8) or AVX512-VNNI / AVX-VNNI (INT4) quant_matmul takes a faster order
// of its own instead (below: FP8-BF16, INT4-A8), each with a scalar definition its vector paths
// match bit for bit, and each independent of token count, thread count and slice in the same way.
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

// y[T, N] = x[T, K] · W^T for a block-scaled W, in the order cpu_features() selects for the view
// (quant_order below); `scalar` forces the fp32 order's scalar definition.
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

// ---- The faster orders (matmul_quant_fast.cpp), chosen from cpu_features() ----
//
// FP8 on an AVX512-BF16 CPU: the "FP8-BF16 order". x is rounded to bf16 as in the BF16 order
// (matmul_internal.h); each weight is its exact bf16 value times 2^8 (e4m3 fits bf16 exactly);
// per block of block_cols columns, sixteen lane sums p[0..15] start at +0 and take the
// vdpbf16ps steps of the BF16 order over the block's 32-column chunks (lane l: columns 2l + 1
// then 2l, dp with DAZ/FTZ); after the block, acc[l] = fma(p[l], scale * 2^-8, acc[l]) (the
// product scale * 2^-8 rounded once in fp32); y is the BF16 order's reduction of acc. The view
// needs cols, col0 and block_cols multiples of 32 (else the fp32 order).
//
// INT4 on an AVX512-VNNI or AVX-VNNI CPU: the "INT4-A8 order" (W4A8, activations quantized per
// token in groups of 32 columns of the view, as llama.cpp's Q8_0): amax = max |x| over the group
// (the last group may be shorter), d = amax / 127 (fp32 division), inv = amax > 0 ? 127 / amax :
// 0, q[k] = clamp(nearbyint(x[k] * inv), -127, 127) (the product rounded to fp32 first; NaN
// gives 0). Per chunk of 128 columns, lane l (0..15) covers the 8 columns 8l..8l+7 (one packed
// int32 word): s = sum over them of (nibble - 8) * q (exact int32), then
// acc[l] = fma(float(s), w_scale(column 8l) * d(group of 8l), acc[l]) (the scale product rounded
// once in fp32); lanes past cols are left alone. y is the BF16 order's reduction of acc. The view
// needs cols, col0 and block_cols multiples of 8 (else the fp32 order).

enum class QuantOrder { kFp32, kFp8Bf16, kInt4A8 };
enum class QuantPath {
  kFp32Scalar,
  kFp32Avx2,
  kFp32Avx512,
  kFp8Bf16Scalar,
  kFp8Bf16Avx512,
  kInt4A8Scalar,
  kInt4A8Avx512Vnni,  // 512-bit vpdpbusd
  kInt4A8AvxVnni,     // 256-bit (VEX) vpdpbusd
};
const char* quant_path_name(QuantPath path);
// Whether this CPU (cpu_features(), after EPSERVE_CPU_FEATURES) has what the path needs.
bool quant_path_available(QuantPath path);
// The order quant_matmul uses for this view with cpu_features().
QuantOrder quant_order(const WeightView& w);
// The path quant_matmul uses for this view (scalar: the fp32 scalar definition).
QuantPath quant_auto_path(const WeightView& w, bool scalar);
bool fp8_bf16_view_ok(const WeightView& w);
bool int4_a8_view_ok(const WeightView& w);
// quant_matmul on a chosen path; throws when the CPU or the view does not allow it.
void quant_matmul_path(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       QuantPath path);

// x quantized for the INT4-A8 order, padded to whole 128-column chunks. `q` and `group_scale`
// are the definition's values; `packed`, `offset` and `lane_scale` are the same in the layout
// of the vector kernels (per token and chunk: 64 bytes holding q[8l + 2i] at byte 4l + i, then
// 64 bytes holding q[8l + 2i + 1]; -8 x the lane's sum of q; d of the lane's group, 0 past cols).
struct Int8Activations {
  int64_t num_tokens = 0, cols = 0, chunks = 0;
  const int8_t* q = nullptr;           // [T][chunks * 128]
  const float* group_scale = nullptr;  // [T][ceil(cols / 32)]
  const int8_t* packed = nullptr;      // [T][chunks][128]
  const int32_t* offset = nullptr;     // [T][chunks][16]
  const float* lane_scale = nullptr;   // [T][chunks][16]
};

void fp8_bf16_rows_scalar(const bf16_t* xb, int64_t x_stride, int64_t num_tokens,
                          const WeightView& w, float* y, int64_t n_begin, int64_t n_end);
void fp8_bf16_rows_avx512(const bf16_t* xb, int64_t x_stride, int64_t num_tokens,
                          const WeightView& w, float* y, int64_t n_begin, int64_t n_end);
// x[0, cols) quantized for the INT4-A8 order into both layouts of Int8Activations (one token,
// `chunks` chunks): the definition's values, which int4_a8_quantize_avx512vnni gives too. The
// vector version writes `packed`, `offset` and `lane_scale` with aligned 64-byte stores: those
// three must be 64-byte aligned (Int8Activations' buffers are).
void int4_a8_quantize(const float* x, int64_t cols, int64_t chunks, int8_t* q, float* group_scale,
                      int8_t* packed, int32_t* offset, float* lane_scale);
void int4_a8_quantize_avx512vnni(const float* x, int64_t cols, int64_t chunks, int8_t* q,
                                 float* group_scale, int8_t* packed, int32_t* offset,
                                 float* lane_scale);
void int4_a8_rows_scalar(const Int8Activations& xa, const WeightView& w, float* y, int64_t n_begin,
                         int64_t n_end);
void int4_a8_rows_avx512vnni(const Int8Activations& xa, const WeightView& w, float* y,
                             int64_t n_begin, int64_t n_end);
void int4_a8_rows_avxvnni(const Int8Activations& xa, const WeightView& w, float* y, int64_t n_begin,
                          int64_t n_end);
// quant_matmul with a chosen row kernel, on the global thread pool (tests, benchmark).
void quant_matmul_with(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       QuantRowsFn kernel);

}  // namespace matmul_detail
}  // namespace epserve
