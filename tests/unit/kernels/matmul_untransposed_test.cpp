#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace {

struct Untransposed {
  DType dtype;
  int64_t rows, cols, row_stride;
  std::vector<float> f32;
  std::vector<bf16_t> bf16;

  Untransposed(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng)
      : dtype(dtype), rows(rows), cols(cols), row_stride(cols + 5) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (int64_t i = 0; i < rows * row_stride; ++i) {
      if (dtype == DType::BF16) {
        bf16.push_back(f32_to_bf16(dist(rng)));
      } else {
        f32.push_back(dist(rng));
      }
    }
  }
  WeightView view() const {
    const void* d = dtype == DType::BF16 ? static_cast<const void*>(bf16.data()) : f32.data();
    return WeightView{dtype, d, rows, cols, row_stride};
  }
};

// Every path gives the reference's bits (one fma chain per output), for strided rows and any
// token count, and each token's row is the same alone as in a batch. The reference is within
// N * 2^-24 * sum |x w| of the exact product (one rounding per fma).
TEST(MatmulUntransposed, BitsOfTheReferenceForAnyBatch) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (auto [N, K] : {std::pair<int64_t, int64_t>{1, 1},
                        {64, 256},
                        {7, 29},
                        {13, 8},
                        {3, 67},
                        {5, 48},
                        {9, 72},
                        {4, 97},
                        {6, 16}}) {
      Untransposed w(dtype, N, K, rng);
      for (int64_t T : {1, 2, 3, 4, 5, 9}) {
        const int64_t x_stride = N + 3, y_stride = K + 2;
        std::vector<float> x(T * x_stride);
        for (auto& v : x) v = dist(rng);
        std::vector<float> ref(T * y_stride, -5.0f), fast(T * y_stride, -5.0f);
        matmul_untransposed_reference(x.data(), x_stride, T, w.view(), ref.data(), y_stride);
        matmul_untransposed(x.data(), x_stride, T, w.view(), fast.data(), y_stride);
        // Each vector path the CPU has, called directly, gives the same bits.
        if (matmul_detail::avx2_available()) {
          std::vector<float> avx2(T * y_stride, -5.0f);
          matmul_detail::untransposed_avx2(x.data(), x_stride, T, w.view(), avx2.data(), y_stride);
          ASSERT_EQ(std::memcmp(avx2.data(), ref.data(), 4 * avx2.size()), 0) << "avx2 " << T;
        }
        if (cpu_has_avx512() && dtype == DType::F32) {
          std::vector<float> avx512(T * y_stride, -5.0f);
          matmul_detail::untransposed_avx512(x.data(), x_stride, T, w.view(), avx512.data(),
                                             y_stride);
          ASSERT_EQ(std::memcmp(avx512.data(), ref.data(), 4 * avx512.size()), 0) << "avx512 " << T;
        }
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> one(K);
          matmul_untransposed(x.data() + t * x_stride, x_stride, 1, w.view(), one.data(), K);
          for (int64_t k = 0; k < K; ++k) {
            float r = ref[t * y_stride + k];
            ASSERT_EQ(std::memcmp(&r, &fast[t * y_stride + k], 4), 0) << T << " " << t << " " << k;
            ASSERT_EQ(std::memcmp(&r, &one[k], 4), 0) << T << " " << t << " " << k;
            double exact = 0, magnitude = 0;
            for (int64_t n = 0; n < N; ++n) {
              exact += double(x[t * x_stride + n]) * w.view().at(n, k);
              magnitude += std::fabs(double(x[t * x_stride + n]) * w.view().at(n, k));
            }
            EXPECT_LE(std::fabs(r - exact), N * std::ldexp(1.0, -24) * magnitude + 1e-30);
          }
          // Padding between rows is left alone.
          for (int64_t k = K; k < y_stride; ++k) EXPECT_EQ(fast[t * y_stride + k], -5.0f);
        }
      }
    }
  }
}

}  // namespace
}  // namespace epserve
