#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul_internal.h"
#include "support/matmul_run.h"

namespace epserve {
namespace {

using matmul_detail::MatmulPath;

// A weight matrix [rows, cols] stored with a row stride, in F32 or BF16.
struct Weights {
  DType dtype;
  int64_t rows, cols, row_stride;
  std::vector<float> f32;
  std::vector<bf16_t> bf16;

  Weights(DType dtype, int64_t rows, int64_t cols, int64_t row_stride, std::mt19937& rng)
      : dtype(dtype), rows(rows), cols(cols), row_stride(row_stride) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    size_t n = static_cast<size_t>(rows * row_stride);
    if (dtype == DType::BF16) {
      bf16.resize(n);
      for (auto& v : bf16) v = f32_to_bf16(dist(rng));
    } else {
      f32.resize(n);
      for (auto& v : f32) v = dist(rng);
    }
  }
  WeightView view() const {
    const void* data = dtype == DType::BF16 ? static_cast<const void*>(bf16.data()) : f32.data();
    return WeightView{dtype, data, rows, cols, row_stride};
  }
};

using testing::random_vector;

// The fp32-order paths for weights of this dtype; kAuto among them unless it takes BF16 weights
// to the BF16 order (matmul_bf16_test.cpp).
std::vector<MatmulPath> paths(DType dtype) {
  std::vector<MatmulPath> out = {MatmulPath::kScalar};
  if (matmul_detail::canonical_path(dtype) == MatmulPath::kScalar) out.push_back(MatmulPath::kAuto);
  if (matmul_detail::avx2_available()) {
    out.push_back(MatmulPath::kGemv);
    out.push_back(MatmulPath::kGemm);
  }
  return out;
}

// Index of the first element whose bits differ, or -1.
int64_t first_bit_difference(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0) return i;
  }
  return -1;
}

class ThreadCount {
 public:
  explicit ThreadCount(int n) { ThreadPool::set_global_threads(n); }
  ~ThreadCount() { ThreadPool::set_global_threads(available_cores()); }
};

// |y - reference| <= (ceil(K/8) + 4) * 2^-24 * sum_k |x_k| |w_k|: each of the eight lane sums
// takes ceil(K/8) roundings, the reduction three more, and the reference one (double -> float).
void expect_close_to_reference(const std::vector<float>& x, int64_t num_tokens, const WeightView& w,
                               const std::vector<float>& y, const char* what) {
  std::vector<float> ref(y.size());
  matmul_reference(x.data(), num_tokens, w, ref.data());
  double unit = std::ldexp(1.0, -24) * static_cast<double>((w.cols + 7) / 8 + 4) * 1.0001;
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double magnitude = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) magnitude += std::fabs(x[t * w.cols + k] * w.at(n, k));
      double err = std::fabs(static_cast<double>(y[t * w.rows + n]) - ref[t * w.rows + n]);
      ASSERT_LE(err, unit * magnitude + 1e-30)
          << what << " t=" << t << " n=" << n << " K=" << w.cols << " y=" << y[t * w.rows + n]
          << " ref=" << ref[t * w.rows + n];
    }
  }
}

TEST(Matmul, MatchesReferenceWithinRoundingBound) {
  std::mt19937 rng(1);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (auto [T, N, K] : {std::tuple{1, 1, 1},
                           {1, 7, 5},
                           {2, 9, 8},
                           {3, 33, 301},
                           {4, 65, 600},
                           {5, 31, 257},
                           {17, 70, 513},
                           {100, 13, 1000}}) {
      Weights w(dtype, N, K, K + 3, rng);
      auto x = random_vector(int64_t{T} * K, rng);
      for (MatmulPath path : paths(dtype)) {
        auto y = testing::run_matmul(x, T, w.view(), path);
        expect_close_to_reference(x, T, w.view(), y, matmul_detail::path_name(path));
      }
    }
  }
}

// The property the parallel layouts rely on: y[t, n] has the same bits whatever the batch it
// is in, whatever the other tokens, the thread count and the path.
TEST(Matmul, OutputBitsIndependentOfBatchThreadsAndPath) {
  std::mt19937 rng(2);
  std::uniform_int_distribution<int64_t> pick_k(1, 700);
  std::uniform_int_distribution<int64_t> pick_n(1, 80);
  for (int64_t T = 1; T <= 70; ++T) {
    DType dtype = T % 2 ? DType::BF16 : DType::F32;
    int64_t K = pick_k(rng);
    if (K % 8 == 0) ++K;
    int64_t N = pick_n(rng) * 2 + 1;
    Weights w(dtype, N, K, K + T % 5, rng);
    auto x = random_vector(T * K, rng);
    // Baseline: every token alone, scalar path, one thread.
    std::vector<float> alone(static_cast<size_t>(T * N));
    {
      ThreadCount one(1);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<float> xt(x.begin() + t * K, x.begin() + (t + 1) * K);
        auto yt = testing::run_matmul(xt, 1, w.view(), MatmulPath::kScalar);
        std::copy(yt.begin(), yt.end(), alone.begin() + t * N);
      }
    }
    for (int threads : {1, 2}) {
      ThreadCount count(threads);
      for (MatmulPath path : paths(dtype)) {
        auto y = testing::run_matmul(x, T, w.view(), path);
        int64_t diff = first_bit_difference(y.data(), alone.data(), T * N);
        ASSERT_EQ(diff, -1) << "T=" << T << " N=" << N << " K=" << K << " threads=" << threads
                            << " path=" << matmul_detail::path_name(path) << " at t=" << diff / N
                            << " n=" << diff % N;
      }
    }
    // The same tokens in reverse order next to new neighbours give the same rows.
    if (T > 1) {
      auto noise = random_vector(3 * K, rng);
      std::vector<float> mixed;
      for (int64_t t = T - 1; t >= 0; --t) {
        mixed.insert(mixed.end(), x.begin() + t * K, x.begin() + (t + 1) * K);
        if (t % 3 == 0) mixed.insert(mixed.end(), noise.begin(), noise.begin() + K);
      }
      int64_t rows = static_cast<int64_t>(mixed.size()) / K;
      for (MatmulPath path : paths(dtype)) {
        auto y = testing::run_matmul(mixed, rows, w.view(), path);
        int64_t r = 0;
        for (int64_t t = T - 1; t >= 0; --t) {
          ASSERT_EQ(first_bit_difference(y.data() + r * N, alone.data() + t * N, N), -1)
              << "mixed batch T=" << T << " K=" << K << " path=" << matmul_detail::path_name(path);
          r += t % 3 == 0 ? 2 : 1;
        }
      }
    }
  }
}

// Large enough for several K blocks, row blocks and token tiles of the GEMM path, and for two
// threads to split the rows at every token count.
TEST(Matmul, BlockedShapesKeepBits) {
  std::mt19937 rng(3);
  for (DType dtype : {DType::BF16, DType::F32}) {
    const int64_t N = 301, K = 1001;
    Weights w(dtype, N, K, K, rng);
    for (int64_t T : {1, 3, 17, 200}) {
      auto x = random_vector(T * K, rng);
      auto scalar = testing::run_matmul(x, T, w.view(), MatmulPath::kScalar);
      for (int threads : {1, 2}) {
        ThreadCount count(threads);
        for (MatmulPath path : paths(dtype)) {
          auto y = testing::run_matmul(x, T, w.view(), path);
          EXPECT_EQ(first_bit_difference(y.data(), scalar.data(), T * N), -1)
              << matmul_detail::path_name(path) << " T=" << T << " threads=" << threads;
        }
      }
    }
  }
}

// A row slice gives the same bits as the matching columns of the whole output; a column slice
// the same bits as a contiguous copy of the slice.
TEST(Matmul, SlicedViewsKeepBits) {
  std::mt19937 rng(4);
  for (DType dtype : {DType::BF16, DType::F32}) {
    for (int64_t T : {1, 3, 4, 9, 40}) {
      const int64_t N = 57, K = 203;
      Weights w(dtype, N, K, K + 5, rng);
      auto x = random_vector(T * K, rng);
      auto full = testing::run_matmul(x, T, w.view(), MatmulPath::kScalar);
      WeightView rows = w.view().row_slice(11, 46);
      int64_t c0 = 13, c1 = 190;
      WeightView cols = w.view().col_slice(c0, c1);
      Weights copy(dtype, N, c1 - c0, c1 - c0, rng);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = c0; k < c1; ++k) {
          if (dtype == DType::BF16) {
            copy.bf16[n * (c1 - c0) + k - c0] = w.bf16[n * w.row_stride + k];
          } else {
            copy.f32[n * (c1 - c0) + k - c0] = w.f32[n * w.row_stride + k];
          }
        }
      }
      std::vector<float> xc;
      for (int64_t t = 0; t < T; ++t) {
        xc.insert(xc.end(), x.begin() + t * K + c0, x.begin() + t * K + c1);
      }
      auto cols_expected = testing::run_matmul(xc, T, copy.view(), MatmulPath::kScalar);
      for (int threads : {1, 2}) {
        ThreadCount count(threads);
        for (MatmulPath path : paths(dtype)) {
          auto yr = testing::run_matmul(x, T, rows, path);
          for (int64_t t = 0; t < T; ++t) {
            ASSERT_EQ(first_bit_difference(yr.data() + t * 35, full.data() + t * N + 11, 35), -1)
                << "row slice T=" << T << " " << matmul_detail::path_name(path);
          }
          auto yc = testing::run_matmul(xc, T, cols, path);
          ASSERT_EQ(first_bit_difference(yc.data(), cols_expected.data(), T * N), -1)
              << "column slice T=" << T << " " << matmul_detail::path_name(path);
        }
      }
    }
  }
}

TEST(Matmul, EmptyShapes) {
  std::mt19937 rng(5);
  Weights w(DType::F32, 5, 0, 0, rng);
  std::vector<float> x;
  for (MatmulPath path : paths(DType::F32)) {
    auto y = testing::run_matmul(x, 3, w.view(), path);
    for (float v : y) EXPECT_EQ(v, 0.0f);
  }
  Weights w2(DType::BF16, 4, 9, 9, rng);
  float out = 7.0f;
  matmul(nullptr, 0, w2.view(), &out);
  EXPECT_EQ(out, 7.0f);
}

TEST(Matmul, RejectsBadViews) {
  std::mt19937 rng(6);
  Weights w(DType::F32, 4, 9, 9, rng);
  WeightView v = w.view();
  v.dtype = DType::F16;
  std::vector<float> x(9), y(4);
  EXPECT_THROW(matmul(x.data(), 1, v, y.data()), Error);
  v = w.view();
  v.row_stride = 4;
  EXPECT_THROW(matmul(x.data(), 1, v, y.data()), Error);
}

}  // namespace
}  // namespace epserve
