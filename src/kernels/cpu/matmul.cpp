#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_quant.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {

WeightView WeightView::of(const Tensor& t) {
  EPS_CHECK(t.ndim() == 2, "matmul weight must be 2-D, found shape {}", shape_str(t.shape()));
  EPS_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F32,
            "matmul weight must be BF16 or F32, found {}", dtype_name(t.dtype()));
  return WeightView{t.dtype(), t.data(), t.dim(0), t.dim(1), t.dim(1)};
}

WeightView WeightView::row_slice(int64_t begin, int64_t end) const {
  EPS_CHECK(0 <= begin && begin <= end && end <= rows, "row slice [{}, {}) of {} rows", begin, end,
            rows);
  WeightView v = *this;
  v.rows = end - begin;
  if (format != WeightFormat::kDense) {
    v.row0 += begin;
    return v;
  }
  v.data = static_cast<const char*>(data) + begin * row_stride * dtype_size(dtype);
  return v;
}

WeightView WeightView::col_slice(int64_t begin, int64_t end) const {
  EPS_CHECK(0 <= begin && begin <= end && end <= cols, "column slice [{}, {}) of {} columns", begin,
            end, cols);
  WeightView v = *this;
  v.cols = end - begin;
  if (format != WeightFormat::kDense) {
    v.col0 += begin;
    return v;
  }
  v.data = static_cast<const char*>(data) + begin * dtype_size(dtype);
  return v;
}

float WeightView::at(int64_t row, int64_t col) const {
  if (format != WeightFormat::kDense) return quant_weight_at(*this, row, col);
  int64_t i = row * row_stride + col;
  return dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(data)[i])
                              : static_cast<const float*>(data)[i];
}

void matmul_reference(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k)
        acc += static_cast<double>(x[t * w.cols + k]) * w.at(n, k);
      y[t * w.rows + n] = static_cast<float>(acc);
    }
  }
}

void matmul(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  matmul_detail::matmul_with_path(x, num_tokens, w, y, matmul_detail::MatmulPath::kAuto);
}

void matmul_fp32_order(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  using matmul_detail::MatmulPath;
  MatmulPath path = MatmulPath::kScalar;
  if (matmul_detail::avx2_available()) {
    path = num_tokens <= matmul_detail::kGemvMaxTokens ? MatmulPath::kGemv : MatmulPath::kGemm;
  }
  matmul_detail::matmul_with_path(x, num_tokens, w, y, path);
}

void matmul_untransposed_reference(const float* x, int64_t x_stride, int64_t num_tokens,
                                   const WeightView& w, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* yt = y + t * y_stride;
    std::fill(yt, yt + w.cols, 0.0f);
    for (int64_t n = 0; n < w.rows; ++n) {
      float xv = x[t * x_stride + n];
      for (int64_t k = 0; k < w.cols; ++k) yt[k] = std::fma(xv, w.at(n, k), yt[k]);
    }
  }
}

void matmul_untransposed(const float* x, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                         float* y, int64_t y_stride) {
  if (w.format != WeightFormat::kDense) {
    matmul_untransposed_reference(x, x_stride, num_tokens, w, y, y_stride);
    return;
  }
  EPS_CHECK(w.dtype == DType::BF16 || w.dtype == DType::F32,
            "matmul weight must be BF16 or F32, found {}", dtype_name(w.dtype));
  if (w.dtype == DType::F32 && cpu_has_avx512()) {
    matmul_detail::untransposed_avx512(x, x_stride, num_tokens, w, y, y_stride);
  } else if (matmul_detail::avx2_available()) {
    matmul_detail::untransposed_avx2(x, x_stride, num_tokens, w, y, y_stride);
  } else {
    matmul_untransposed_reference(x, x_stride, num_tokens, w, y, y_stride);
  }
}

namespace matmul_detail {

bool avx2_available() {
  return cpu_has_avx2_fma();
}

bool bf16_available() {
  return cpu_features().avx512_bf16;
}

MatmulPath canonical_path(DType dtype) {
  return dtype == DType::BF16 && bf16_available() ? MatmulPath::kBf16Scalar : MatmulPath::kScalar;
}

bool in_bf16_family(MatmulPath path) {
  return path == MatmulPath::kBf16Scalar || path == MatmulPath::kBf16Gemv ||
         path == MatmulPath::kBf16Gemm;
}

const char* path_name(MatmulPath path) {
  switch (path) {
    case MatmulPath::kAuto:
      return "auto";
    case MatmulPath::kScalar:
      return "scalar";
    case MatmulPath::kGemv:
      return "gemv-avx2";
    case MatmulPath::kGemm:
      return "gemm-avx2";
    case MatmulPath::kBf16Scalar:
      return "bf16-scalar";
    case MatmulPath::kBf16Gemv:
      return "bf16-gemv-avx512";
    case MatmulPath::kBf16Gemm:
      return "bf16-gemm-avx512";
  }
  return "?";
}

namespace {

template <typename W>
void rows_scalar_typed(const float* x, int64_t num_tokens, const W* w, int64_t row_stride,
                       int64_t n_rows, int64_t k_cols, float* y, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const W* row = w + n * row_stride;
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * k_cols;
      float acc[8] = {};
      for (int64_t k0 = 0; k0 < k_cols; k0 += 8) {
        for (int l = 0; l < 8; ++l) {
          int64_t k = k0 + l;
          float xv = k < k_cols ? xt[k] : 0.0f;
          float wv = 0.0f;
          if (k < k_cols) {
            if constexpr (sizeof(W) == 2) {
              wv = bf16_to_f32(row[k]);
            } else {
              wv = row[k];
            }
          }
          acc[l] = std::fma(xv, wv, acc[l]);
        }
      }
      float lo = (acc[0] + acc[4]) + (acc[2] + acc[6]);
      float hi = (acc[1] + acc[5]) + (acc[3] + acc[7]);
      y[t * n_rows + n] = lo + hi;
    }
  }
}

}  // namespace

void rows_scalar(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
                 int64_t n_end) {
  if (w.dtype == DType::BF16) {
    rows_scalar_typed(x, num_tokens, static_cast<const bf16_t*>(w.data), w.row_stride, w.rows,
                      w.cols, y, n_begin, n_end);
  } else {
    rows_scalar_typed(x, num_tokens, static_cast<const float*>(w.data), w.row_stride, w.rows,
                      w.cols, y, n_begin, n_end);
  }
}

void matmul_with_path(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                      MatmulPath path) {
  if (w.format != WeightFormat::kDense) {
    quant_matmul(x, num_tokens, w, y, path == MatmulPath::kScalar);
    return;
  }
  EPS_CHECK(w.dtype == DType::BF16 || w.dtype == DType::F32,
            "matmul weight must be BF16 or F32, found {}", dtype_name(w.dtype));
  EPS_CHECK(num_tokens >= 0 && w.rows >= 0 && w.cols >= 0,
            "matmul shapes must be non-negative: tokens {}, weight [{}, {}]", num_tokens, w.rows,
            w.cols);
  EPS_CHECK(w.rows <= 1 || w.row_stride >= w.cols,
            "matmul weight row stride {} is smaller than its {} columns", w.row_stride, w.cols);
  if (num_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + num_tokens * w.rows, 0.0f);
    return;
  }
  if (path == MatmulPath::kAuto && canonical_path(w.dtype) == MatmulPath::kBf16Scalar) {
    path = num_tokens <= kBf16GemvMaxTokens ? MatmulPath::kBf16Gemv : MatmulPath::kBf16Gemm;
  }
  if (in_bf16_family(path)) {
    matmul_bf16(x, num_tokens, w, y, path);
    return;
  }
  if (path == MatmulPath::kAuto) {
    if (!avx2_available()) {
      path = MatmulPath::kScalar;
    } else {
      path = num_tokens <= kGemvMaxTokens ? MatmulPath::kGemv : MatmulPath::kGemm;
    }
  }
  EPS_CHECK(path == MatmulPath::kScalar || avx2_available(),
            "matmul path {} needs a CPU with AVX2 and FMA", path_name(path));
  // Chunks of output rows large enough (~64K multiply-adds) to be worth a thread wake-up.
  int64_t work_per_row = std::max<int64_t>(1, num_tokens * w.cols);
  int64_t min_rows = std::max<int64_t>(8, (int64_t{1} << 16) / work_per_row);
  if (path == MatmulPath::kGemm) {
    gemm_avx2(x, num_tokens, w, y, min_rows);
    return;
  }
  // Chunks of whole kGemvRowChunk-row blocks, several per thread: a memory-bound GEMV on a
  // shared machine finishes when the slowest thread does, so threads that run ahead take the
  // chunks of one that was descheduled.
  auto kernel = path == MatmulPath::kScalar ? rows_scalar : gemv_rows_avx2;
  const int64_t num_blocks = (w.rows + kGemvRowChunk - 1) / kGemvRowChunk;
  ThreadPool::global().parallel_for(
      num_blocks,
      [&](int64_t b0, int64_t b1) {
        kernel(x, num_tokens, w, y, b0 * kGemvRowChunk, std::min(w.rows, b1 * kGemvRowChunk));
      },
      (min_rows + kGemvRowChunk - 1) / kGemvRowChunk, 4);
}

}  // namespace matmul_detail
}  // namespace epserve
