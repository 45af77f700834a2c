// A random block-scaled matrix (FP8 or INT4) with its dequantised copy, and a bitwise
// comparison, for the quantized matmul tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cpu/matmul_quant.h"

namespace epserve::testing {

// A block-scaled matrix with random codes and scales, and its dequantised F32 copy.
struct QuantMatrix {
  WeightFormat format;
  int64_t rows, cols, block_rows, block_cols;
  Tensor values, scales;
  std::vector<float> dense;  // [rows, cols], the canonical fp32 values

  QuantMatrix(WeightFormat format, int64_t rows, int64_t cols, int64_t br, int64_t bc,
              std::mt19937& rng)
      : format(format), rows(rows), cols(cols), block_rows(br), block_cols(bc) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(1e-3f, 2e-2f);
    if (format == WeightFormat::kFp8Block) {
      values = Tensor::empty(DType::F8_E4M3, {rows, cols});
      auto* q = values.ptr<uint8_t>();
      for (int64_t i = 0; i < rows * cols; ++i) {
        uint8_t b = static_cast<uint8_t>(byte(rng));
        if ((b & 0x7f) == 0x7f) b &= 0xfe;  // no NaN codes
        q[i] = b;
      }
      scales = Tensor::empty(DType::F32, {(rows + br - 1) / br, (cols + bc - 1) / bc});
      for (int64_t i = 0; i < scales.numel(); ++i) scales.f32()[i] = scale(rng);
    } else {
      values = Tensor::empty(DType::I32, {rows, (cols + 7) / 8});
      auto* q = values.ptr<uint32_t>();
      for (int64_t i = 0; i < values.numel(); ++i) {
        q[i] = static_cast<uint32_t>(byte(rng)) | static_cast<uint32_t>(byte(rng)) << 8 |
               static_cast<uint32_t>(byte(rng)) << 16 | static_cast<uint32_t>(byte(rng)) << 24;
      }
      scales = Tensor::empty(DType::BF16, {rows, (cols + bc - 1) / bc});
      for (int64_t i = 0; i < scales.numel(); ++i)
        scales.ptr<bf16_t>()[i] = f32_to_bf16(scale(rng));
    }
    WeightView v = view();
    dense.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) dense[r * cols + c] = quant_weight_at(v, r, c);
  }
  WeightView view() const {
    return format == WeightFormat::kFp8Block
               ? fp8_block_view(values, scales, block_rows, block_cols)
               : int4_group_view(values, scales, rows, cols, block_cols);
  }
  WeightView dense_view() const { return WeightView{DType::F32, dense.data(), rows, cols, cols}; }
};

inline void expect_bits_equal(const std::vector<float>& a, const std::vector<float>& b,
                              const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
        << what << ": element " << i << ": " << a[i] << " vs " << b[i];
  }
}

}  // namespace epserve::testing
