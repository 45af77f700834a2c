#include "kernels/cpu/matmul_quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

// e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal.
float decode_e4m3(uint8_t bits) {
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                        : std::ldexp(1.0f + mantissa / 8.0f, exponent - 7);
  return (bits & 0x80) ? -magnitude : magnitude;
}

const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = decode_e4m3(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

float scale_at(const WeightView& w, int64_t block_row, int64_t block_col) {
  const int64_t i = block_row * w.scale_stride + block_col;
  return w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                      : static_cast<const float*>(w.scales)[i];
}

}  // namespace

float fp8_e4m3_to_f32(uint8_t bits) {
  return e4m3_table()[bits];
}

uint8_t f32_to_fp8_e4m3(float v) {
  if (std::isnan(v)) return 0x7f;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::min(std::fabs(v), 448.0f);
  // Round to nearest, ties to even (std::nearbyint in the default rounding mode), as torch.
  if (a < std::ldexp(1.0f, -6)) {  // subnormal: multiples of 2^-9 (8 * 2^-9 is the first normal)
    return static_cast<uint8_t>(sign | static_cast<int>(std::nearbyint(std::ldexp(a, 9))));
  }
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exponent = e - 1 + 7;           // biased, a = (2m) * 2^(e-1)
  int mantissa = static_cast<int>(std::nearbyint((2.0f * m - 1.0f) * 8.0f));
  if (mantissa == 8) {
    mantissa = 0;
    exponent += 1;
  }
  const int code = std::min((exponent << 3) | mantissa, 0x7e);
  return static_cast<uint8_t>(sign | code);
}

WeightView fp8_block_view(const Tensor& weight, const Tensor& scale_inv, int64_t block_rows,
                          int64_t block_cols) {
  EPS_CHECK(weight.ndim() == 2 && weight.dtype() == DType::F8_E4M3,
            "FP8 weight must be 2-D F8_E4M3, found {} {}", dtype_name(weight.dtype()),
            shape_str(weight.shape()));
  EPS_CHECK(block_rows > 0 && block_cols > 0, "FP8 block size [{}, {}] must be positive",
            block_rows, block_cols);
  const int64_t rows = weight.dim(0), cols = weight.dim(1);
  const Shape scale_shape{(rows + block_rows - 1) / block_rows,
                          (cols + block_cols - 1) / block_cols};
  EPS_CHECK(scale_inv.dtype() == DType::F32 && scale_inv.shape() == scale_shape,
            "weight_scale_inv must be F32 {} for a [{}, {}] weight in [{}, {}] blocks, found {} {}",
            shape_str(scale_shape), rows, cols, block_rows, block_cols,
            dtype_name(scale_inv.dtype()), shape_str(scale_inv.shape()));
  WeightView v{DType::F8_E4M3, weight.data(), rows, cols, cols};
  v.format = WeightFormat::kFp8Block;
  v.scales = scale_inv.data();
  v.scale_dtype = DType::F32;
  v.scale_stride = scale_shape[1];
  v.block_rows = block_rows;
  v.block_cols = block_cols;
  return v;
}

WeightView int4_group_view(const Tensor& packed, const Tensor& scale, int64_t rows, int64_t cols,
                           int64_t group) {
  EPS_CHECK(group > 0, "INT4 group size {} must be positive", group);
  const Shape packed_shape{rows, (cols + 7) / 8};
  EPS_CHECK(packed.dtype() == DType::I32 && packed.shape() == packed_shape,
            "weight_packed must be I32 {} for a [{}, {}] weight, found {} {}",
            shape_str(packed_shape), rows, cols, dtype_name(packed.dtype()),
            shape_str(packed.shape()));
  const Shape scale_shape{rows, (cols + group - 1) / group};
  EPS_CHECK(
      (scale.dtype() == DType::BF16 || scale.dtype() == DType::F32) && scale.shape() == scale_shape,
      "weight_scale must be BF16 or F32 {} for a [{}, {}] weight in groups of {}, found {} {}",
      shape_str(scale_shape), rows, cols, group, dtype_name(scale.dtype()),
      shape_str(scale.shape()));
  WeightView v{DType::I32, packed.data(), rows, cols, packed_shape[1] * 8};
  v.format = WeightFormat::kInt4Group;
  v.scales = scale.data();
  v.scale_dtype = scale.dtype();
  v.scale_stride = scale_shape[1];
  v.block_rows = 1;
  v.block_cols = group;
  return v;
}

float quant_weight_at(const WeightView& w, int64_t row, int64_t col) {
  const int64_t r = w.row0 + row, c = w.col0 + col;
  const float scale = scale_at(w, r / w.block_rows, c / w.block_cols);
  if (w.format == WeightFormat::kFp8Block) {
    const uint8_t q = static_cast<const uint8_t*>(w.data)[r * w.row_stride + c];
    return fp8_e4m3_to_f32(q) * scale;
  }
  EPS_CHECK(w.format == WeightFormat::kInt4Group, "not a block-scaled weight view");
  const int64_t i = r * w.row_stride + c;
  const uint32_t word = static_cast<const uint32_t*>(w.data)[i / 8];
  const int nibble = static_cast<int>((word >> (4 * (i % 8))) & 0xf);
  return static_cast<float>(nibble - 8) * scale;
}

int64_t weight_bytes(const WeightView& w) {
  if (w.format == WeightFormat::kDense) {
    return w.rows * w.cols * static_cast<int64_t>(dtype_size(w.dtype));
  }
  const int64_t scale_rows = (w.rows + w.block_rows - 1) / w.block_rows;
  const int64_t scale_cols = (w.cols + w.block_cols - 1) / w.block_cols;
  const int64_t scales = scale_rows * scale_cols * static_cast<int64_t>(dtype_size(w.scale_dtype));
  const int64_t values =
      w.format == WeightFormat::kFp8Block ? w.rows * w.cols : w.rows * ((w.cols + 1) / 2);
  return values + scales;
}

namespace matmul_detail {

void quant_rows_scalar(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       int64_t n_begin, int64_t n_end) {
  std::vector<float> row(static_cast<size_t>((w.cols + 7) / 8 * 8), 0.0f);
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t k = 0; k < w.cols; ++k) row[k] = quant_weight_at(w, n, k);
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * w.cols;
      float acc[8] = {};
      for (int64_t k0 = 0; k0 < w.cols; k0 += 8) {
        for (int l = 0; l < 8; ++l) {
          const int64_t k = k0 + l;
          const float xv = k < w.cols ? xt[k] : 0.0f;
          acc[l] = std::fma(xv, row[k], acc[l]);  // row is zero past cols
        }
      }
      const float lo = (acc[0] + acc[4]) + (acc[2] + acc[6]);
      const float hi = (acc[1] + acc[5]) + (acc[3] + acc[7]);
      y[t * w.rows + n] = lo + hi;
    }
  }
}

bool quant_vector_ok(const WeightView& w) {
  return cpu_has_avx2_fma() && w.col0 % 8 == 0 && w.block_cols % 8 == 0 && w.row_stride % 8 == 0;
}

}  // namespace matmul_detail

void quant_matmul(const float* x, int64_t num_tokens, const WeightView& w, float* y, bool scalar) {
  EPS_CHECK(w.format == WeightFormat::kFp8Block || w.format == WeightFormat::kInt4Group,
            "quant_matmul needs a block-scaled weight view");
  EPS_CHECK(num_tokens >= 0 && w.rows >= 0 && w.cols >= 0,
            "matmul shapes must be non-negative: tokens {}, weight [{}, {}]", num_tokens, w.rows,
            w.cols);
  if (num_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + num_tokens * w.rows, 0.0f);
    return;
  }
  matmul_detail::quant_matmul_path(x, num_tokens, w, y, matmul_detail::quant_auto_path(w, scalar));
}

void matmul_detail::quant_matmul_with(const float* x, int64_t num_tokens, const WeightView& w,
                                      float* y, QuantRowsFn kernel) {
  if (num_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + num_tokens * w.rows, 0.0f);
    return;
  }
  // Row chunks of 16 (a multiple of every tile height), about 64K multiply-adds per chunk.
  constexpr int64_t kRowChunk = 16;
  const int64_t work_per_row = std::max<int64_t>(1, num_tokens * w.cols);
  const int64_t min_rows = std::max<int64_t>(kRowChunk, (int64_t{1} << 16) / work_per_row);
  const int64_t num_blocks = (w.rows + kRowChunk - 1) / kRowChunk;
  ThreadPool::global().parallel_for(
      num_blocks,
      [&](int64_t b0, int64_t b1) {
        kernel(x, num_tokens, w, y, b0 * kRowChunk, std::min(w.rows, b1 * kRowChunk));
      },
      (min_rows + kRowChunk - 1) / kRowChunk, 4);
}

}  // namespace epserve
