#include "kernels/cpu/matmul_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/vector_paths.h"
#include "support/matmul_run.h"
#include "support/quant_matrix.h"

namespace epserve {
namespace {

using matmul_detail::MatmulPath;

using testing::expect_bits_equal;
using testing::QuantMatrix;
using testing::random_vector;

TEST(MatmulQuant, E4m3DecodesEveryCodeAsTorchDoes) {
  // Spot values of float8_e4m3fn: max 448, min normal 2^-6, min subnormal 2^-9.
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x3c), 1.5f);
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(static_cast<uint8_t>(code))), code) << code;
  }
  // Random values go to the nearest code (ties aside).
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-9.0f, 9.0f);
  for (int i = 0; i < 20000; ++i) {
    const float v = std::ldexp(dist(rng), static_cast<int>(rng() % 20) - 12);
    const float got = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v));
    for (int code = 0; code < 256; ++code) {
      if ((code & 0x7f) == 0x7f) continue;
      ASSERT_LE(std::fabs(got - v), std::fabs(fp8_e4m3_to_f32(static_cast<uint8_t>(code)) - v))
          << v << " -> " << got;
    }
  }
  EXPECT_EQ(f32_to_fp8_e4m3(1000.0f), 0x7e);  // saturates
  EXPECT_EQ(f32_to_fp8_e4m3(1.0625f), 0x38);  // tie between 1 and 1.125 goes to the even code
}

TEST(MatmulQuant, Int4NibblesAreLowestFirstWithOffsetEight) {
  // compressed-tensors' pack_to_int32: element i at bits 4i..4i+3, stored as value + 8.
  Tensor packed = Tensor::empty(DType::I32, {1, 1});
  packed.ptr<uint32_t>()[0] = 0x0123456fu;
  Tensor scale = Tensor::empty(DType::BF16, {1, 1});
  scale.ptr<bf16_t>()[0] = f32_to_bf16(0.5f);
  WeightView v = int4_group_view(packed, scale, 1, 8, 32);
  const float expected[8] = {7, -2, -3, -4, -5, -6, -7, -8};
  for (int k = 0; k < 8; ++k) EXPECT_EQ(quant_weight_at(v, 0, k), expected[k] * 0.5f) << k;
}

// Every path, token count, block size and slice gives the bits of the dense F32 matmul over the
// dequantised matrix (the canonical definition).
// What matmul() must give for a quantized view: the fp32 order's bits (`fp32`), or, where
// cpu_features() picks a faster order for the view, that order's scalar definition.
std::vector<float> auto_order_reference(const std::vector<float>& x, int64_t tokens,
                                        const WeightView& w, const std::vector<float>& fp32) {
  using matmul_detail::QuantOrder;
  using matmul_detail::QuantPath;
  const QuantOrder order = matmul_detail::quant_order(w);
  if (order == QuantOrder::kFp32) return fp32;
  std::vector<float> y(static_cast<size_t>(tokens * w.rows), -1.0f);
  matmul_detail::quant_matmul_path(
      x.data(), tokens, w, y.data(),
      order == QuantOrder::kFp8Bf16 ? QuantPath::kFp8Bf16Scalar : QuantPath::kInt4A8Scalar);
  return y;
}

// The fp32 order (matmul_quant.h) on every path; matmul() on the order cpu_features() picks.
TEST(MatmulQuant, EveryPathMatchesTheDequantisedMatmulBitForBit) {
  std::mt19937 rng(7);
  struct Case {
    WeightFormat format;
    int64_t rows, cols, br, bc;
  };
  const Case cases[] = {
      {WeightFormat::kFp8Block, 37, 300, 128, 128},  {WeightFormat::kFp8Block, 64, 64, 16, 32},
      {WeightFormat::kFp8Block, 130, 131, 128, 128}, {WeightFormat::kFp8Block, 20, 96, 8, 24},
      {WeightFormat::kInt4Group, 33, 256, 1, 32},    {WeightFormat::kInt4Group, 16, 100, 1, 32},
      {WeightFormat::kInt4Group, 9, 64, 1, 16},
  };
  for (const Case& c : cases) {
    QuantMatrix m(c.format, c.rows, c.cols, c.br, c.bc, rng);
    for (int64_t tokens : {1, 2, 3, 4, 5, 9, 70}) {
      auto x = random_vector(tokens * c.cols, rng);
      const std::string what =
          fmt::format("format {} [{}x{}] blocks {}x{} tokens {}", static_cast<int>(c.format),
                      c.rows, c.cols, c.br, c.bc, tokens);
      auto want = testing::run_matmul(x, tokens, m.dense_view(), MatmulPath::kScalar);
      expect_bits_equal(testing::run_matmul(x, tokens, m.view(), MatmulPath::kScalar), want,
                        what + " scalar");
      expect_bits_equal(testing::run_matmul(x, tokens, m.view(), MatmulPath::kAuto),
                        auto_order_reference(x, tokens, m.view(), want), what + " auto");
      if (matmul_detail::avx2_available()) {
        expect_bits_equal(testing::run_matmul(x, tokens, m.dense_view(), MatmulPath::kGemv), want,
                          what + " dense gemv");
      }
    }
    // Row and column slices (tensor-parallel shards, MLA's per-head rows) keep the blocks.
    for (auto [r0, r1, c0, c1] : {std::array<int64_t, 4>{3, c.rows - 2, 0, c.cols},
                                  std::array<int64_t, 4>{0, c.rows, 8, c.cols - 8},
                                  std::array<int64_t, 4>{1, c.rows / 2, 5, c.cols / 2 + 3}}) {
      WeightView q = m.view().row_slice(r0, r1).col_slice(c0, c1);
      WeightView d = m.dense_view().row_slice(r0, r1).col_slice(c0, c1);
      for (int64_t tokens : {1, 4, 6}) {
        std::vector<float> x = random_vector(tokens * (c1 - c0), rng);
        const std::string what = fmt::format("slice [{}:{}, {}:{}] of [{}x{}] tokens {}", r0, r1,
                                             c0, c1, c.rows, c.cols, tokens);
        auto want = testing::run_matmul(x, tokens, d, MatmulPath::kScalar);
        expect_bits_equal(testing::run_matmul(x, tokens, q, MatmulPath::kScalar), want,
                          what + " scalar");
        expect_bits_equal(testing::run_matmul(x, tokens, q, MatmulPath::kAuto),
                          auto_order_reference(x, tokens, q, want), what + " auto");
      }
      for (int64_t r = 0; r < r1 - r0; r += 3)
        for (int64_t col = 0; col < c1 - c0; col += 7) ASSERT_EQ(q.at(r, col), d.at(r, col));
    }
  }
}

// One row kernel over rows [n_begin, n_end) of a view, single-threaded; rows outside stay -1.
std::vector<float> run_rows(matmul_detail::QuantRowsFn kernel, const std::vector<float>& x,
                            int64_t num_tokens, const WeightView& w, int64_t n_begin,
                            int64_t n_end) {
  std::vector<float> y(static_cast<size_t>(num_tokens * w.rows), -1.0f);
  kernel(x.data(), num_tokens, w, y.data(), n_begin, n_end);
  return y;
}

// The AVX-512 kernel (two rows per zmm, 16-column steps, odd 8-column blocks, odd row counts,
// partial last blocks) against the scalar definition and the AVX2 kernel, bit for bit.
TEST(MatmulQuant, Avx512PathMatchesTheScalarDefinitionBitForBit) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  std::mt19937 rng(13);
  struct Case {
    WeightFormat format;
    int64_t rows, cols, br, bc;
  };
  const Case cases[] = {
      {WeightFormat::kFp8Block, 37, 300, 128, 128},  {WeightFormat::kFp8Block, 19, 136, 16, 24},
      {WeightFormat::kFp8Block, 130, 259, 128, 128}, {WeightFormat::kFp8Block, 11, 40, 3, 8},
      {WeightFormat::kInt4Group, 33, 256, 1, 32},    {WeightFormat::kInt4Group, 17, 100, 1, 32},
      {WeightFormat::kInt4Group, 9, 72, 1, 8},       {WeightFormat::kInt4Group, 21, 200, 1, 24},
  };
  for (const Case& c : cases) {
    QuantMatrix m(c.format, c.rows, c.cols, c.br, c.bc, rng);
    for (int64_t tokens = 1; tokens <= 9; ++tokens) {
      auto x = random_vector(tokens * c.cols, rng);
      for (auto [n0, n1] : {std::array<int64_t, 2>{0, c.rows}, std::array<int64_t, 2>{1, c.rows},
                            std::array<int64_t, 2>{3, c.rows - 2}}) {
        const std::string what =
            fmt::format("format {} [{}x{}] blocks {}x{} tokens {} rows [{}, {})",
                        static_cast<int>(c.format), c.rows, c.cols, c.br, c.bc, tokens, n0, n1);
        auto want = run_rows(matmul_detail::quant_rows_scalar, x, tokens, m.view(), n0, n1);
        expect_bits_equal(run_rows(matmul_detail::quant_rows_avx512, x, tokens, m.view(), n0, n1),
                          want, what + " avx512");
        if (cpu_has_avx2_fma()) {
          expect_bits_equal(run_rows(matmul_detail::quant_rows_avx2, x, tokens, m.view(), n0, n1),
                            want, what + " avx2");
        }
      }
    }
    // Row and column slices keep the blocks (column starts at multiples of 8, as the vector
    // paths require; the kernels also take FP8 rows whose stride is not a multiple of 8).
    for (auto [r0, r1, c0, c1] : {std::array<int64_t, 4>{3, c.rows - 2, 0, c.cols},
                                  std::array<int64_t, 4>{1, c.rows, 8, c.cols - 5},
                                  std::array<int64_t, 4>{2, c.rows / 2 + 1, 16, c.cols / 2 + 3}}) {
      WeightView q = m.view().row_slice(r0, r1).col_slice(c0, c1);
      for (int64_t tokens : {1, 2, 3, 4, 5, 7}) {
        auto x = random_vector(tokens * (c1 - c0), rng);
        const std::string what = fmt::format("slice [{}:{}, {}:{}] of [{}x{}] tokens {}", r0, r1,
                                             c0, c1, c.rows, c.cols, tokens);
        expect_bits_equal(run_rows(matmul_detail::quant_rows_avx512, x, tokens, q, 0, q.rows),
                          run_rows(matmul_detail::quant_rows_scalar, x, tokens, q, 0, q.rows),
                          what);
      }
    }
  }
}

// Scales too large for the folded FP8 decode (scale x 2^8) fall back to the scalar definition;
// subnormal and NaN codes decode as on the scalar path.
TEST(MatmulQuant, Avx512Fp8EdgeScalesAndCodes) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  std::mt19937 rng(17);
  QuantMatrix m(WeightFormat::kFp8Block, 20, 64, 8, 32, rng);
  auto* q = m.values.ptr<uint8_t>();
  for (int64_t i = 0; i < 64; ++i) q[i] = static_cast<uint8_t>(i % 8 | (i & 8 ? 0x80 : 0));
  q[64] = 0x7f;
  q[65] = 0xff;
  m.scales.f32()[1] = 0x1p110f;
  m.scales.f32()[2] = 0x1p-120f;
  for (int64_t tokens : {1, 2, 4}) {
    auto x = random_vector(tokens * 64, rng);
    expect_bits_equal(run_rows(matmul_detail::quant_rows_avx512, x, tokens, m.view(), 0, 20),
                      run_rows(matmul_detail::quant_rows_scalar, x, tokens, m.view(), 0, 20),
                      fmt::format("edge scales and codes, tokens {}", tokens));
  }
}

TEST(MatmulQuant, ThreadCountDoesNotChangeBits) {
  std::mt19937 rng(11);
  QuantMatrix m(WeightFormat::kInt4Group, 200, 512, 1, 32, rng);
  auto x = random_vector(3 * 512, rng);
  ThreadPool::set_global_threads(1);
  auto one = testing::run_matmul(x, 3, m.view(), MatmulPath::kAuto);
  ThreadPool::set_global_threads(4);
  auto four = testing::run_matmul(x, 3, m.view(), MatmulPath::kAuto);
  ThreadPool::set_global_threads(available_cores());
  expect_bits_equal(one, four, "1 vs 4 threads");
}

TEST(MatmulQuant, UntransposedUsesTheDequantisedValues) {
  std::mt19937 rng(5);
  QuantMatrix m(WeightFormat::kFp8Block, 48, 40, 16, 16, rng);
  auto x = random_vector(2 * 48, rng);
  std::vector<float> a(2 * 40), b(2 * 40);
  matmul_untransposed(x.data(), 2, m.view(), a.data());
  matmul_untransposed_reference(x.data(), 48, 2, m.dense_view(), b.data(), 40);
  expect_bits_equal(a, b, "untransposed");
}

TEST(MatmulQuant, ViewsRefuseScalesOfTheWrongShape) {
  Tensor w = Tensor::empty(DType::F8_E4M3, {300, 200});
  Tensor s = Tensor::empty(DType::F32, {2, 2});
  EXPECT_THROW(fp8_block_view(w, s, 128, 128), Error);  // needs [3, 2]
  Tensor packed = Tensor::empty(DType::I32, {16, 8});
  Tensor scale = Tensor::empty(DType::BF16, {16, 1});
  EXPECT_THROW(int4_group_view(packed, scale, 16, 64, 32), Error);  // needs [16, 2]
  EXPECT_THROW(int4_group_view(packed, Tensor::empty(DType::BF16, {16, 2}), 16, 72, 32), Error);
  EXPECT_NO_THROW(int4_group_view(packed, Tensor::empty(DType::BF16, {16, 2}), 16, 64, 32));
}

TEST(MatmulQuant, WeightBytesCountValuesAndScales) {
  Tensor w = Tensor::empty(DType::F8_E4M3, {256, 256});
  Tensor s = Tensor::empty(DType::F32, {2, 2});
  EXPECT_EQ(weight_bytes(fp8_block_view(w, s, 128, 128)), 256 * 256 + 16);
  Tensor packed = Tensor::empty(DType::I32, {16, 8});
  EXPECT_EQ(weight_bytes(int4_group_view(packed, Tensor::empty(DType::BF16, {16, 2}), 16, 64, 32)),
            16 * 32 + 16 * 2 * 2);
}

}  // namespace
}  // namespace epserve
