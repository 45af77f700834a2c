// The BF16 canonical order of matmul (matmul_internal.h): its scalar definition and the driver
// of the AVX512-BF16 paths (rounding x to bf16 once, then rows in parallel).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <memory>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

// GEMM row blocks: 48 rows of K = 2048 bf16 (192 KB) stay in L2 while every group of four
// tokens passes over them.
int64_t gemm_row_block(int64_t k_cols) {
  int64_t rows = (int64_t{192} << 10) / std::max<int64_t>(1, 2 * k_cols);
  return std::clamp<int64_t>(rows / 12 * 12, 12, 192);
}

}  // namespace

void bf16_rows_scalar(const bf16_t* xb, int64_t x_stride, int64_t num_tokens, const WeightView& w,
                      float* y, int64_t n_begin, int64_t n_end) {
  const bf16_t* data = static_cast<const bf16_t*>(w.data);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const bf16_t* row = data + n * w.row_stride;
    for (int64_t t = 0; t < num_tokens; ++t) {
      const bf16_t* xt = xb + t * x_stride;
      float acc[16] = {};
      for (int64_t k0 = 0; k0 < w.cols; k0 += 32) {
        for (int l = 0; l < 16; ++l) {
          for (int64_t k : {k0 + 2 * l + 1, k0 + 2 * l}) {
            float xv = k < w.cols ? bf16_to_f32(xt[k]) : 0.0f;
            float wv = k < w.cols ? bf16_to_f32(row[k]) : 0.0f;
            acc[l] = bf16_dp_step(xv, wv, acc[l]);
          }
        }
      }
      float h[8], q[4];
      for (int l = 0; l < 8; ++l) h[l] = acc[l] + acc[l + 8];
      for (int l = 0; l < 4; ++l) q[l] = h[l] + h[l + 4];
      y[t * w.rows + n] = (q[0] + q[2]) + (q[1] + q[3]);
    }
  }
}

void matmul_bf16(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                 MatmulPath path) {
  EPS_CHECK(w.dtype == DType::BF16, "matmul path {} needs BF16 weights, found {}", path_name(path),
            dtype_name(w.dtype));
  EPS_CHECK(path == MatmulPath::kBf16Scalar || bf16_available(),
            "matmul path {} needs a CPU with AVX512-BF16", path_name(path));
  const int64_t k_cols = w.cols;
  const int64_t x_stride = (k_cols + 31) / 32 * 32;
  // x rounded to bf16, per calling thread, 64-byte aligned and kept between calls.
  static thread_local std::unique_ptr<bf16_t, void (*)(void*)> buffer{nullptr, std::free};
  static thread_local int64_t capacity = 0;
  const int64_t needed = num_tokens * x_stride;
  if (needed > capacity) {
    auto* p = static_cast<bf16_t*>(std::aligned_alloc(64, sizeof(bf16_t) * needed));
    EPS_CHECK(p != nullptr, "matmul: out of memory for {} bf16 activations", needed);
    buffer.reset(p);
    capacity = needed;
  }
  bf16_t* xb = buffer.get();
  ThreadPool& pool = ThreadPool::global();
  if (path == MatmulPath::kBf16Scalar) {
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t k = 0; k < x_stride; ++k) {
        xb[t * x_stride + k] = k < k_cols ? bf16_from_f32_rne_daz(x[t * k_cols + k]) : 0;
      }
    }
    pool.parallel_for(w.rows, [&](int64_t n0, int64_t n1) {
      bf16_rows_scalar(xb, x_stride, num_tokens, w, y, n0, n1);
    });
    return;
  }
  pool.parallel_for(
      num_tokens,
      [&](int64_t t0, int64_t t1) {
        round_to_bf16_avx512(x + t0 * k_cols, t1 - t0, k_cols, xb + t0 * x_stride, x_stride);
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / k_cols));
  // Chunks of whole row blocks, large enough (~64K products) to be worth a thread wake-up, and
  // several per thread so that threads that run ahead take the chunks of a descheduled one.
  const int64_t row_block = path == MatmulPath::kBf16Gemv ? kGemvRowChunk : gemm_row_block(k_cols);
  const int64_t min_rows = std::max<int64_t>(8, (int64_t{1} << 16) / (num_tokens * k_cols));
  const int64_t num_blocks = (w.rows + row_block - 1) / row_block;
  pool.parallel_for(
      num_blocks,
      [&](int64_t b0, int64_t b1) {
        bf16_rows_avx512(xb, x_stride, num_tokens, w, y, b0 * row_block,
                         std::min(w.rows, b1 * row_block), row_block);
      },
      (min_rows + row_block - 1) / row_block, 4);
}

}  // namespace epserve::matmul_detail
