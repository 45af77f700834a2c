// The BF16 canonical order of matmul (matmul_internal.h): its scalar definition against the
// hardware's vdpbf16ps and vcvtne2ps2bf16, and every AVX512-BF16 path against the scalar one,
// bit for bit, for any number of tokens, thread count, K tail and row stride.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "support/matmul_run.h"

namespace epserve {
namespace {

using matmul_detail::MatmulPath;

class ThreadCount {
 public:
  explicit ThreadCount(int n) { ThreadPool::set_global_threads(n); }
  ~ThreadCount() { ThreadPool::set_global_threads(available_cores()); }
};

struct Bf16Weights {
  int64_t rows, cols, row_stride;
  std::vector<bf16_t> data;
  Bf16Weights(int64_t rows, int64_t cols, int64_t row_stride, std::mt19937& rng)
      : rows(rows), cols(cols), row_stride(row_stride) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    data.resize(static_cast<size_t>(rows * row_stride));
    for (auto& v : data) v = f32_to_bf16(dist(rng));
  }
  WeightView view() const { return WeightView{DType::BF16, data.data(), rows, cols, row_stride}; }
};

using testing::random_vector;

int64_t first_bit_difference(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0) return i;
  }
  return -1;
}

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// The scalar definition is within the error of rounding x to bf16 (2^-8 relative per element)
// plus ceil(K/32) * 2 + 4 fp32 roundings of sum |x w| from the exact product with bf16 weights.
TEST(MatmulBf16, ScalarOrderIsCloseToTheExactProduct) {
  std::mt19937 rng(11);
  for (auto [T, N, K] : {std::tuple{1, 5, 1}, {2, 9, 33}, {3, 17, 700}, {5, 4, 2049}}) {
    Bf16Weights w(N, K, K + 7, rng);
    auto x = random_vector(int64_t{T} * K, rng);
    auto y = testing::run_matmul(x, T, w.view(), MatmulPath::kBf16Scalar);
    std::vector<float> ref(y.size());
    matmul_reference(x.data(), T, w.view(), ref.data());
    double unit = std::ldexp(1.0, -8) + std::ldexp(1.0, -24) * ((K + 31) / 32 * 2 + 4);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t n = 0; n < N; ++n) {
        double magnitude = 0.0;
        for (int64_t k = 0; k < K; ++k) magnitude += std::fabs(x[t * K + k] * w.view().at(n, k));
        EXPECT_LE(std::fabs(double{y[t * N + n]} - ref[t * N + n]), unit * magnitude)
            << "T=" << T << " K=" << K << " t=" << t << " n=" << n;
      }
    }
  }
}

// bf16_from_f32_rne_daz is what vcvtne2ps2bf16 computes: ties to even, denormals to zero, NaN
// quiet, overflow to infinity.
TEST(MatmulBf16, RoundingMatchesTheConversionInstruction) {
  if (!matmul_detail::bf16_available()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  std::mt19937 rng(12);
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f + 0x1p-8f,
                          1.0f + 0x3p-8f,
                          0x1p-130f,
                          -0x1p-130f,
                          FLT_MIN,
                          -FLT_MIN,
                          FLT_MAX,
                          -FLT_MAX,
                          INFINITY,
                          -INFINITY,
                          bits_to_float(0x7f800001u),
                          bits_to_float(0xffc12345u),
                          0x1.fffffep-127f,
                          0x1.00801p0f};
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 4000; ++i) v.push_back(bits_to_float(bits(rng)));
  const int64_t k_cols = static_cast<int64_t>(v.size());
  const int64_t stride = (k_cols + 31) / 32 * 32;
  std::vector<bf16_t, std::allocator<bf16_t>> unaligned(stride + 32, 0xdead);
  bf16_t* out = reinterpret_cast<bf16_t*>((reinterpret_cast<uintptr_t>(unaligned.data()) + 63) &
                                          ~uintptr_t{63});
  matmul_detail::round_to_bf16_avx512(v.data(), 1, k_cols, out, stride);
  for (int64_t i = 0; i < k_cols; ++i) {
    ASSERT_EQ(out[i], matmul_detail::bf16_from_f32_rne_daz(v[i])) << "value " << v[i] << " i=" << i;
  }
  for (int64_t i = k_cols; i < stride; ++i) ASSERT_EQ(out[i], 0) << "padding at " << i;
}

// One output of K = 2 or 34 isolates the steps of vdpbf16ps: the scalar definition (two fmas,
// odd element first, each rounded; denormal inputs and results to zero) gives the hardware's
// bits, where one rounding, the even element first or honouring denormals would not.
TEST(MatmulBf16, ScalarStepsAreTheInstructionsSteps) {
  if (!matmul_detail::bf16_available()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  struct Case {
    float x0, x1, w0, w1;
    const char* what;
  };
  const float e24 = 0x1p-24f;
  for (const Case& c : std::vector<Case>{
           {1.0f, 1.0f, 1.0f, 0.0f, "plain"},
           {e24, 1.0f, 1.0f, -1.0f, "odd element first"},
           {1.0f, e24, -1.0f, 1.0f, "even element second"},
           {0x1p-130f, 1.0f, 0x1p100f, 0.0f, "denormal x is zero"},
           {1.0f, 0.0f, 0x1p-130f, 0.0f, "denormal w is zero"},
           {0x1p-70f, 0.0f, 0x1p-60f, 0.0f, "denormal result flushed"},
           {0x1p-63f, 0x1p-63f, 0x1p-63f, -0x1.fp-64f, "denormal sum flushed"},
       }) {
    for (int64_t K : {2, 34}) {
      // x = [x0, x1, 1, 1, ...], w = [w0, w1, 0, 0, ...]: the later pairs add +0.
      std::vector<float> x(static_cast<size_t>(K), 1.0f);
      x[0] = c.x0;
      x[1] = c.x1;
      std::vector<bf16_t> wd(static_cast<size_t>(K), 0);
      wd[0] = f32_to_bf16(c.w0);
      wd[1] = f32_to_bf16(c.w1);
      WeightView w{DType::BF16, wd.data(), 1, K, K};
      auto scalar = testing::run_matmul(x, 1, w, MatmulPath::kBf16Scalar);
      auto gemv = testing::run_matmul(x, 1, w, MatmulPath::kBf16Gemv);
      EXPECT_EQ(first_bit_difference(scalar.data(), gemv.data(), 1), -1)
          << c.what << " K=" << K << ": scalar " << scalar[0] << " hardware " << gemv[0];
    }
  }
  // Two roundings: 1 + 2^-24 + 2^-24 stays 1 (one rounding would give 1 + 2^-23).
  std::vector<float> x = {e24, e24};
  std::vector<bf16_t> wd = {f32_to_bf16(1.0f), f32_to_bf16(1.0f)};
  EXPECT_EQ(testing::run_matmul(x, 1, WeightView{DType::BF16, wd.data(), 1, 2, 2},
                                MatmulPath::kBf16Scalar)[0],
            2 * e24);
}

class MatmulBf16Path : public ::testing::TestWithParam<MatmulPath> {
 protected:
  void SetUp() override {
    if (!matmul_detail::bf16_available()) {
      GTEST_SKIP() << matmul_detail::path_name(GetParam())
                   << " needs AVX512-BF16, which this CPU (or EPSERVE_CPU_FEATURES) lacks";
    }
  }
};

// Every token alone on the scalar path, one thread, is the baseline; the path under test gives
// its bits for the whole batch, with 1 and 2 threads, and in a reordered batch with other rows.
TEST_P(MatmulBf16Path, BitsOfTheScalarOrderForAnyBatch) {
  const MatmulPath path = GetParam();
  std::mt19937 rng(13);
  std::uniform_int_distribution<int64_t> pick_k(1, 1100);
  std::uniform_int_distribution<int64_t> pick_n(1, 60);
  for (int64_t T = 1; T <= 70; T += T < 20 ? 1 : 7) {
    int64_t K = pick_k(rng);
    if (T % 3 == 0) K = K / 32 * 32 + 32;  // no tail
    const int64_t N = pick_n(rng) * 2 + 1;
    Bf16Weights w(N, K, K + T % 5, rng);
    auto x = random_vector(T * K, rng);
    std::vector<float> alone(static_cast<size_t>(T * N));
    {
      ThreadCount one(1);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<float> xt(x.begin() + t * K, x.begin() + (t + 1) * K);
        auto yt = testing::run_matmul(xt, 1, w.view(), MatmulPath::kBf16Scalar);
        std::copy(yt.begin(), yt.end(), alone.begin() + t * N);
      }
    }
    for (int threads : {1, 2}) {
      ThreadCount count(threads);
      auto y = testing::run_matmul(x, T, w.view(), path);
      int64_t diff = first_bit_difference(y.data(), alone.data(), T * N);
      ASSERT_EQ(diff, -1) << "T=" << T << " N=" << N << " K=" << K << " threads=" << threads
                          << " at t=" << diff / N << " n=" << diff % N;
    }
    if (T > 1) {
      auto noise = random_vector(3 * K, rng);
      std::vector<float> mixed;
      for (int64_t t = T - 1; t >= 0; --t) {
        mixed.insert(mixed.end(), x.begin() + t * K, x.begin() + (t + 1) * K);
        if (t % 3 == 0) mixed.insert(mixed.end(), noise.begin(), noise.begin() + K);
      }
      auto y = testing::run_matmul(mixed, static_cast<int64_t>(mixed.size()) / K, w.view(), path);
      int64_t r = 0;
      for (int64_t t = T - 1; t >= 0; --t) {
        ASSERT_EQ(first_bit_difference(y.data() + r * N, alone.data() + t * N, N), -1)
            << "mixed batch T=" << T << " K=" << K;
        r += t % 3 == 0 ? 2 : 1;
      }
    }
  }
}

// Several row blocks, threads splitting them, many token groups, a row slice and a column
// slice (odd offsets: unaligned rows).
TEST_P(MatmulBf16Path, BlockedAndSlicedShapesKeepBits) {
  const MatmulPath path = GetParam();
  std::mt19937 rng(14);
  const int64_t N = 301, K = 2077;
  Bf16Weights w(N, K, K + 3, rng);
  for (WeightView view : {w.view(), w.view().row_slice(7, 290), w.view().col_slice(5, 1990)}) {
    for (int64_t T : {1, 4, 17, 131}) {
      std::vector<float> x = random_vector(T * view.cols, rng);
      auto scalar = testing::run_matmul(x, T, view, MatmulPath::kBf16Scalar);
      for (int threads : {1, 2}) {
        ThreadCount count(threads);
        auto y = testing::run_matmul(x, T, view, path);
        EXPECT_EQ(first_bit_difference(y.data(), scalar.data(), T * view.rows), -1)
            << "T=" << T << " threads=" << threads << " rows=" << view.rows
            << " cols=" << view.cols;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, MatmulBf16Path,
                         ::testing::Values(MatmulPath::kBf16Gemv, MatmulPath::kBf16Gemm,
                                           MatmulPath::kAuto),
                         [](const auto& info) {
                           switch (info.param) {
                             case MatmulPath::kBf16Gemv:
                               return "Gemv";
                             case MatmulPath::kBf16Gemm:
                               return "Gemm";
                             default:
                               return "Auto";
                           }
                         });

TEST(MatmulBf16, BadRequestsAreRefused) {
  std::mt19937 rng(15);
  std::vector<float> wf(18, 1.0f), x(9, 1.0f), y(2);
  WeightView f32{DType::F32, wf.data(), 2, 9, 9};
  EXPECT_THROW(matmul_detail::matmul_with_path(x.data(), 1, f32, y.data(), MatmulPath::kBf16Scalar),
               Error);
  if (!matmul_detail::bf16_available()) {
    Bf16Weights w(2, 9, 9, rng);
    EXPECT_THROW(
        matmul_detail::matmul_with_path(x.data(), 1, w.view(), y.data(), MatmulPath::kBf16Gemv),
        Error);
  }
}

}  // namespace
}  // namespace epserve
