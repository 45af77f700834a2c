#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"

namespace epserve {

WeightView WeightView::of(const Tensor& t) {
  EPS_CHECK(t.ndim() == 2, "matmul weight must be 2-D, found shape {}", shape_str(t.shape()));
  EPS_CHECK(t.dtype() == DType::BF16 || t.dtype() == DType::F32,
            "matmul weight must be BF16 or F32, found {}", dtype_name(t.dtype()));
  return WeightView{t.dtype(), t.data(), t.dim(0), t.dim(1), t.dim(1)};
}

WeightView WeightView::row_slice(int64_t begin, int64_t end) const {
  EPS_CHECK(0 <= begin && begin <= end && end <= rows, "row slice [{}, {}) of {} rows", begin,
            end, rows);
  WeightView v = *this;
  v.data = static_cast<const char*>(data) + begin * row_stride * dtype_size(dtype);
  v.rows = end - begin;
  return v;
}

WeightView WeightView::col_slice(int64_t begin, int64_t end) const {
  EPS_CHECK(0 <= begin && begin <= end && end <= cols, "column slice [{}, {}) of {} columns",
            begin, end, cols);
  WeightView v = *this;
  v.data = static_cast<const char*>(data) + begin * dtype_size(dtype);
  v.cols = end - begin;
  return v;
}

float WeightView::at(int64_t row, int64_t col) const {
  int64_t i = row * row_stride + col;
  return dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(data)[i])
                              : static_cast<const float*>(data)[i];
}

void matmul_reference(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.cols; ++k) acc += static_cast<double>(x[t * w.cols + k]) * w.at(n, k);
      y[t * w.rows + n] = static_cast<float>(acc);
    }
  }
}

namespace {

template <typename W, typename Convert>
void matmul_rows(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n0,
                 int64_t n1, Convert convert) {
  const W* data = static_cast<const W*>(w.data);
  for (int64_t n = n0; n < n1; ++n) {
    const W* row = data + n * w.row_stride;
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * w.cols;
      float acc = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) acc += xt[k] * convert(row[k]);
      y[t * w.rows + n] = acc;
    }
  }
}

}  // namespace

void matmul(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  if (num_tokens == 0 || w.rows == 0) return;
  ThreadPool::global().parallel_for(
      w.rows,
      [&](int64_t n0, int64_t n1) {
        if (w.dtype == DType::BF16) {
          matmul_rows<bf16_t>(x, num_tokens, w, y, n0, n1, bf16_to_f32);
        } else {
          matmul_rows<float>(x, num_tokens, w, y, n0, n1, [](float v) { return v; });
        }
      },
      16);
}

void matmul_untransposed(const float* x, int64_t num_tokens, const WeightView& w, float* y) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* yt = y + t * w.cols;
    std::fill(yt, yt + w.cols, 0.0f);
    for (int64_t n = 0; n < w.rows; ++n) {
      float xv = x[t * w.rows + n];
      if (w.dtype == DType::BF16) {
        const bf16_t* wr = static_cast<const bf16_t*>(w.data) + n * w.row_stride;
        for (int64_t k = 0; k < w.cols; ++k) yt[k] += xv * bf16_to_f32(wr[k]);
      } else {
        const float* wr = static_cast<const float*>(w.data) + n * w.row_stride;
        for (int64_t k = 0; k < w.cols; ++k) yt[k] += xv * wr[k];
      }
    }
  }
}

}  // namespace epserve
