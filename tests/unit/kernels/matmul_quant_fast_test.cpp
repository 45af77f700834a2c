// The FP8-BF16 and INT4-A8 orders (matmul_quant.h): every vector path against its scalar
// definition bit for bit (tokens 1..70, 1 and 2 threads, partial chunks, slices), batch
// independence, the definitions themselves, and the choice of order from cpu_features().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_quant.h"
#include "support/matmul_run.h"
#include "support/quant_matrix.h"

namespace epserve {
namespace {

using matmul_detail::QuantPath;
using testing::expect_bits_equal;
using testing::QuantMatrix;
using testing::random_vector;

std::vector<float> run(const std::vector<float>& x, int64_t tokens, const WeightView& w,
                       QuantPath path) {
  std::vector<float> y(static_cast<size_t>(tokens * w.rows), -1.0f);
  matmul_detail::quant_matmul_path(x.data(), tokens, w, y.data(), path);
  return y;
}

struct Case {
  WeightFormat format;
  int64_t rows, cols, br, bc;
  bool f32_scales = false;
};

// Each vector path of `scalar`'s order against it, for tokens 1..70 on 1 and 2 threads (token
// counts past one group of a tile, odd ones leaving a single token over the decoded rows); a
// batch's rows equal the same tokens run one at a time; row and column slices.
void check_order(const Case& c, QuantPath scalar, std::initializer_list<QuantPath> vector_paths,
                 std::mt19937& rng) {
  QuantMatrix m(c.format, c.rows, c.cols, c.br, c.bc, rng);
  if (c.f32_scales) {
    Tensor s = Tensor::empty(DType::F32, m.scales.shape());
    for (int64_t i = 0; i < s.numel(); ++i) s.f32()[i] = bf16_to_f32(m.scales.ptr<bf16_t>()[i]);
    m.scales = s;
  }
  const WeightView w = m.view();
  auto x = random_vector(70 * c.cols, rng);
  for (int i = 0; i < 70 * c.cols; i += 97) x[i] *= 40.0f;  // outliers in some groups
  const std::string shape =
      fmt::format("format {} [{}x{}] blocks {}x{}{}", static_cast<int>(c.format), c.rows, c.cols,
                  c.br, c.bc, c.f32_scales ? " f32 scales" : "");
  const auto all = run(x, 70, w, scalar);
  // Batch independence of the definition: token t alone gives row t of the batch.
  for (int64_t t : {0, 5, 69}) {
    std::vector<float> xt(x.begin() + t * c.cols, x.begin() + (t + 1) * c.cols);
    auto one = run(xt, 1, w, scalar);
    expect_bits_equal(one,
                      std::vector<float>(all.begin() + t * c.rows, all.begin() + (t + 1) * c.rows),
                      shape + fmt::format(" token {} alone", t));
  }
  for (QuantPath path : vector_paths) {
    if (!matmul_detail::quant_path_available(path)) continue;
    for (int threads : {1, 2}) {
      ThreadPool::set_global_threads(threads);
      for (int64_t tokens : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17, 31, 33, 47, 64, 70}) {
        std::vector<float> xt(x.begin(), x.begin() + tokens * c.cols);
        expect_bits_equal(
            run(xt, tokens, w, path),
            std::vector<float>(all.begin(), all.begin() + tokens * c.rows),
            shape + fmt::format(" {} tokens {} threads {}", matmul_detail::quant_path_name(path),
                                tokens, threads));
      }
    }
    ThreadPool::set_global_threads(available_cores());
    // Row and column slices (tensor-parallel shards; MLA's per-head rows).
    const int64_t step = c.format == WeightFormat::kFp8Block ? 32 : 8;
    for (auto [r0, r1, c0, c1] :
         {std::array<int64_t, 4>{3, c.rows - 2, 0, c.cols},
          std::array<int64_t, 4>{1, c.rows, step, c.cols - step},
          std::array<int64_t, 4>{2, c.rows / 2 + 1, step,
                                 std::max(2 * step, c.cols / 2 / step * step)}}) {
      const WeightView q = w.row_slice(r0, r1).col_slice(c0, c1);
      for (int64_t tokens : {1, 3, 4, 5, 9, 18}) {
        auto xs = random_vector(tokens * (c1 - c0), rng);
        expect_bits_equal(run(xs, tokens, q, path), run(xs, tokens, q, scalar),
                          shape + fmt::format(" slice [{}:{}, {}:{}] {} tokens {}", r0, r1, c0, c1,
                                              matmul_detail::quant_path_name(path), tokens));
      }
    }
  }
}

TEST(QuantFastOrder, Fp8Bf16PathMatchesItsScalarDefinition) {
  if (!cpu_features().avx512_bf16) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  std::mt19937 rng(21);
  for (const Case& c : {Case{WeightFormat::kFp8Block, 37, 256, 128, 128},
                        Case{WeightFormat::kFp8Block, 66, 96, 16, 32},
                        Case{WeightFormat::kFp8Block, 130, 384, 128, 128},
                        Case{WeightFormat::kFp8Block, 21, 160, 3, 64}}) {
    check_order(c, QuantPath::kFp8Bf16Scalar, {QuantPath::kFp8Bf16Avx512}, rng);
  }
}

TEST(QuantFastOrder, Int4A8PathsMatchTheirScalarDefinition) {
  if (!cpu_features().avx512_vnni && !cpu_features().avx_vnni) GTEST_SKIP() << "no VNNI";
  std::mt19937 rng(22);
  for (const Case& c : {Case{WeightFormat::kInt4Group, 33, 256, 1, 32},
                        Case{WeightFormat::kInt4Group, 18, 104, 1, 32},  // partial chunk, group
                        Case{WeightFormat::kInt4Group, 9, 64, 1, 16},
                        Case{WeightFormat::kInt4Group, 20, 384, 1, 128},
                        Case{WeightFormat::kInt4Group, 17, 200, 1, 8},
                        Case{WeightFormat::kInt4Group, 12, 288, 1, 32, true}}) {
    check_order(c, QuantPath::kInt4A8Scalar,
                {QuantPath::kInt4A8Avx512Vnni, QuantPath::kInt4A8AvxVnni}, rng);
  }
}

// Every e4m3 code (subnormals, zeros, the NaN codes read as 480) and extreme block scales.
TEST(QuantFastOrder, Fp8Bf16EveryCodeAndEdgeScales) {
  if (!cpu_features().avx512_bf16) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  std::mt19937 rng(23);
  QuantMatrix m(WeightFormat::kFp8Block, 8, 256, 4, 32, rng);
  auto* q = m.values.ptr<uint8_t>();
  for (int64_t i = 0; i < 4 * 256; ++i) q[i] = static_cast<uint8_t>(i * 37 % 256);
  for (int64_t i = 4 * 256; i < 5 * 256; ++i)
    q[i] = static_cast<uint8_t>(i % 16 | (i & 16 ? 0x80 : 0));
  m.scales.f32()[1] = 0x1p110f;
  m.scales.f32()[2] = 0x1p-125f;  // scale x 2^-8 is subnormal
  m.scales.f32()[3] = 0.0f;
  for (int64_t tokens : {1, 2, 4, 5}) {
    auto x = random_vector(tokens * 256, rng);
    x[3] = 1e-39f;  // a denormal activation (read as zero)
    expect_bits_equal(run(x, tokens, m.view(), QuantPath::kFp8Bf16Avx512),
                      run(x, tokens, m.view(), QuantPath::kFp8Bf16Scalar),
                      fmt::format("every code, tokens {}", tokens));
  }
}

// The AVX512-VNNI quantization of x gives the definition's bytes in every layout: groups and
// chunks cut short, an all-zero group, NaN (skipped in amax, quantized to 0), an infinity (its
// group's scale is inf and its values 0), denormals, and halves (rounded to even).
TEST(QuantFastOrder, Int4A8QuantizationMatchesItsDefinition) {
  if (!cpu_features().avx512_vnni) GTEST_SKIP() << "no AVX512-VNNI on this CPU";
  std::mt19937 rng(26);
  for (int64_t cols : {8, 40, 104, 128, 200, 264, 520}) {
    const int64_t chunks = (cols + 127) / 128, groups = (cols + 31) / 32;
    auto x = random_vector(cols, rng);
    if (cols >= 40) {
      std::fill(x.begin() + 32, x.begin() + 40, 0.0f);  // group 1 starts with zeros
      x[1] = std::nanf("");
      x[5] = 1e-40f;
      x[6] = 127.0f;  // amax of group 0: x[7] = 2.5 quantizes to 2.5 -> 2 (to even)
      x[7] = 2.5f;
    }
    if (cols >= 104) std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero group
    if (cols >= 200) x[100] = -INFINITY;
    struct Out {
      std::vector<int8_t> q, packed;
      std::vector<float> group_scale, lane_scale;
      std::vector<int32_t> offset;
    };
    auto quantize = [&](auto fn) {
      Out o{std::vector<int8_t>(chunks * 128, 99), std::vector<int8_t>(chunks * 128, 99),
            std::vector<float>(groups, -1.0f), std::vector<float>(chunks * 16, -1.0f),
            std::vector<int32_t>(chunks * 16, 99)};
      // The packed layout is stored with aligned stores, as in the matmul's scratch.
      alignas(64) int8_t packed[5 * 128];
      alignas(64) int32_t offset[5 * 16];
      alignas(64) float lane_scale[5 * 16];
      fn(x.data(), cols, chunks, o.q.data(), o.group_scale.data(), packed, offset, lane_scale);
      o.packed.assign(packed, packed + chunks * 128);
      o.offset.assign(offset, offset + chunks * 16);
      o.lane_scale.assign(lane_scale, lane_scale + chunks * 16);
      return o;
    };
    const Out want = quantize(matmul_detail::int4_a8_quantize);
    const Out got = quantize(matmul_detail::int4_a8_quantize_avx512vnni);
    const std::string where = fmt::format("cols {}", cols);
    EXPECT_EQ(got.q, want.q) << where;
    EXPECT_EQ(got.packed, want.packed) << where;
    EXPECT_EQ(got.offset, want.offset) << where;
    expect_bits_equal(got.group_scale, want.group_scale, where + " group scales");
    expect_bits_equal(got.lane_scale, want.lane_scale, where + " lane scales");
    if (cols >= 40) EXPECT_EQ(want.q[7], 2) << where;
  }
}

// The definitions against the exact product: FP8-BF16 differs only by x's bf16 rounding; INT4-A8
// is exact when x is already on the int8 grid of its groups, and within the int8 rounding
// otherwise.
TEST(QuantFastOrder, DefinitionsAreCloseToTheDequantisedProduct) {
  std::mt19937 rng(24);
  for (WeightFormat format : {WeightFormat::kFp8Block, WeightFormat::kInt4Group}) {
    const bool fp8 = format == WeightFormat::kFp8Block;
    QuantMatrix m(format, 24, 256, fp8 ? 128 : 1, fp8 ? 128 : 32, rng);
    auto x = random_vector(3 * 256, rng);
    if (!fp8) {  // token 0 on the grid: integers with one 127 per group of 32
      for (int k = 0; k < 256; ++k) x[k] = (k % 32 == 0) ? 127.0f : std::round(x[k] * 127.0f);
    }
    std::vector<float> exact(3 * 24);
    matmul_reference(x.data(), 3, m.view(), exact.data());
    const auto y = run(x, 3, m.view(), fp8 ? QuantPath::kFp8Bf16Scalar : QuantPath::kInt4A8Scalar);
    for (int64_t t = 0; t < 3; ++t) {
      double norm = 0;
      for (int64_t n = 0; n < 24; ++n) norm = std::max(norm, std::fabs(double{exact[t * 24 + n]}));
      const double tol = (fp8 ? 1e-2 : (t == 0 ? 1e-6 : 2e-2)) * norm;
      for (int64_t n = 0; n < 24; ++n) {
        EXPECT_NEAR(y[t * 24 + n], exact[t * 24 + n], tol)
            << (fp8 ? "fp8" : "int4") << " token " << t << " row " << n;
      }
    }
  }
}

// matmul() takes the order cpu_features() allows: the faster orders only where the CPU has the
// instructions and the view their alignment; the fp32 order otherwise.
TEST(QuantFastOrder, OrderFollowsCpuFeaturesAndView) {
  std::mt19937 rng(25);
  QuantMatrix fp8(WeightFormat::kFp8Block, 8, 256, 128, 128, rng);
  QuantMatrix int4(WeightFormat::kInt4Group, 8, 256, 1, 32, rng);
  using matmul_detail::QuantOrder;
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(matmul_detail::quant_order(fp8.view()),
            f.avx512_bf16 ? QuantOrder::kFp8Bf16 : QuantOrder::kFp32);
  EXPECT_EQ(matmul_detail::quant_order(int4.view()),
            f.avx512_vnni || f.avx_vnni ? QuantOrder::kInt4A8 : QuantOrder::kFp32);
  EXPECT_EQ(matmul_detail::quant_order(fp8.view().col_slice(8, 200)), QuantOrder::kFp32);
  EXPECT_EQ(matmul_detail::quant_order(int4.view().col_slice(4, 200)), QuantOrder::kFp32);
  EXPECT_EQ(matmul_detail::quant_auto_path(int4.view(), true), QuantPath::kFp32Scalar);
  auto x = random_vector(256, rng);
  std::vector<float> y(8);
  if (!f.avx512_bf16) {
    EXPECT_THROW(matmul_detail::quant_matmul_path(x.data(), 1, fp8.view(), y.data(),
                                                  QuantPath::kFp8Bf16Avx512),
                 Error);
  }
  EXPECT_THROW(matmul_detail::quant_matmul_path(x.data(), 1, int4.view(), y.data(),
                                                QuantPath::kFp8Bf16Scalar),
               Error);
}

}  // namespace
}  // namespace epserve
