// AVX2 + FMA paths of matmul. Both keep the canonical order of matmul_internal.h: eight lane
// sums over K in blocks of eight, a zero-padded last block, one fixed horizontal reduction.
//   GEMV (few tokens): weights are read straight from the view, widened to fp32 in registers,
//     and each weight row is streamed once per group of up to four tokens.
//   GEMM (many tokens): a block of weight rows x K columns is widened once into a packed fp32
//     buffer that stays in L1/L2 while every token of a token tile passes over it; the lane sums
//     of a (token tile, row block) are kept in a small buffer between K blocks.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}

inline __m256 load8(const bf16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// The first `count` (< 8) elements at p, the other lanes zero.
template <typename T>
inline __m256 load_tail(const T* p, int64_t count) {
  T buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(T));
  return load8(buf);
}

// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as rows_scalar computes it.
inline float reduce8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- GEMV ----

// y[t, n] for MT tokens x MN weight rows, reading x and w unpacked.
template <int MT, int MN, typename W>
inline void gemv_tile(const float* x, int64_t k_cols, const W* w, int64_t row_stride, float* y,
                      int64_t y_stride) {
  __m256 acc[MT][MN];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) acc[t][n] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= k_cols; k += 8) {
    __m256 xv[MT];
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t) xv[t] = _mm256_loadu_ps(x + t * k_cols + k);
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) {
      __m256 wv = load8(w + n * row_stride + k);
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
  if (k < k_cols) {
    int64_t rest = k_cols - k;
    __m256 xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = load_tail(x + t * k_cols + k, rest);
    for (int n = 0; n < MN; ++n) {
      __m256 wv = load_tail(w + n * row_stride + k, rest);
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) y[t * y_stride + n] = reduce8(acc[t][n]);
}

template <int MT, int MN, typename W>
void gemv_token_group(const float* x, const WeightView& w, float* y, int64_t n_begin,
                      int64_t n_end) {
  const W* data = static_cast<const W*>(w.data);
  int64_t n = n_begin;
  for (; n + MN <= n_end; n += MN) {
    gemv_tile<MT, MN>(x, w.cols, data + n * w.row_stride, w.row_stride, y + n, w.rows);
  }
  for (; n < n_end; ++n) {
    gemv_tile<MT, 1>(x, w.cols, data + n * w.row_stride, w.row_stride, y + n, w.rows);
  }
}

template <typename W>
void gemv_rows(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
               int64_t n_end) {
  for (int64_t t0 = 0; t0 < num_tokens; t0 += kGemvMaxTokens) {
    const float* xt = x + t0 * w.cols;
    float* yt = y + t0 * w.rows;
    switch (std::min(kGemvMaxTokens, num_tokens - t0)) {
      case 1:
        gemv_token_group<1, 8, W>(xt, w, yt, n_begin, n_end);
        break;
      case 2:
        gemv_token_group<2, 4, W>(xt, w, yt, n_begin, n_end);
        break;
      case 3:
        gemv_token_group<3, 4, W>(xt, w, yt, n_begin, n_end);
        break;
      default:
        gemv_token_group<4, 2, W>(xt, w, yt, n_begin, n_end);
        break;
    }
  }
}

// ---- GEMM ----

constexpr int kPanelRows = 4;     // weight rows per packed panel (micro-tile width)
constexpr int kTileTokens = 3;    // tokens per micro-tile
constexpr int64_t kBlockK = 256;  // columns per K block (multiple of 8)
constexpr int64_t kBlockT = 96;   // tokens per token tile
constexpr int64_t kBlockN = 64;   // weight rows per row block (multiple of kPanelRows)
constexpr int64_t kPanelsPerBlock = kBlockN / kPanelRows;

// Packs rows [0, valid_rows) x columns [0, cols) of w into one panel laid out [cols/8][4][8]
// fp32, zero-padding missing rows and the columns of the last partial block.
template <typename W>
void pack_panel(const W* w, int64_t row_stride, int64_t valid_rows, int64_t cols, float* dst) {
  int64_t full = cols / 8;
  int64_t rest = cols % 8;
  int64_t blocks = full + (rest ? 1 : 0);
  for (int r = 0; r < kPanelRows; ++r) {
    float* out = dst + r * 8;
    if (r >= valid_rows) {
      for (int64_t b = 0; b < blocks; ++b)
        _mm256_store_ps(out + b * kPanelRows * 8, _mm256_setzero_ps());
      continue;
    }
    const W* row = w + r * row_stride;
    for (int64_t b = 0; b < full; ++b)
      _mm256_store_ps(out + b * kPanelRows * 8, load8(row + b * 8));
    if (rest) _mm256_store_ps(out + full * kPanelRows * 8, load_tail(row + full * 8, rest));
  }
}

// One micro-tile: MT tokens x kPanelRows rows over one K block. The lane sums start at zero
// (first block) or come from `sums`; they go back to `sums`, or, after the last block, are
// reduced into y (only the valid rows).
template <int MT>
inline void gemm_micro(const float* x, int64_t x_stride, int64_t cols, const float* panel,
                       float* sums, int64_t sums_stride, bool first, bool last, float* y,
                       int64_t y_stride, int64_t valid_rows) {
  __m256 acc[MT][kPanelRows];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < kPanelRows; ++n) {
      acc[t][n] = first ? _mm256_setzero_ps() : _mm256_load_ps(sums + t * sums_stride + n * 8);
    }
  int64_t full = cols / 8;
  const float* p = panel;
  for (int64_t b = 0; b < full; ++b, p += kPanelRows * 8) {
    __m256 xv[MT];
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t) xv[t] = _mm256_loadu_ps(x + t * x_stride + b * 8);
#pragma GCC unroll 16
    for (int n = 0; n < kPanelRows; ++n) {
      __m256 wv = _mm256_load_ps(p + n * 8);
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
  if (int64_t rest = cols % 8) {
    __m256 xv[MT];
    for (int t = 0; t < MT; ++t) xv[t] = load_tail(x + t * x_stride + full * 8, rest);
    for (int n = 0; n < kPanelRows; ++n) {
      __m256 wv = _mm256_load_ps(p + n * 8);
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
  if (last) {
    for (int t = 0; t < MT; ++t)
      for (int n = 0; n < valid_rows; ++n) y[t * y_stride + n] = reduce8(acc[t][n]);
  } else {
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
      for (int n = 0; n < kPanelRows; ++n)
        _mm256_store_ps(sums + t * sums_stride + n * 8, acc[t][n]);
  }
}

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread scratch: the packed weight block and the lane sums of one (token tile, row block).
struct GemmScratch {
  std::unique_ptr<float, AlignedFree> panels{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kBlockN * kBlockK))};
  std::unique_ptr<float, AlignedFree> sums{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kBlockT * kBlockN * 8))};
};

template <typename W>
void gemm_rows(const float* x, int64_t num_tokens, const WeightView& w, float* y, int64_t n_begin,
               int64_t n_end) {
  static thread_local GemmScratch scratch;
  float* panels = scratch.panels.get();
  float* sums = scratch.sums.get();
  const W* data = static_cast<const W*>(w.data);
  const int64_t k_cols = w.cols;
  const int64_t sums_stride = kPanelsPerBlock * kPanelRows * 8;  // floats between tokens
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBlockN) {
    int64_t block_rows = std::min(kBlockN, n_end - n0);
    int64_t num_panels = (block_rows + kPanelRows - 1) / kPanelRows;
    for (int64_t t0 = 0; t0 < num_tokens; t0 += kBlockT) {
      int64_t tile_tokens = std::min(kBlockT, num_tokens - t0);
      for (int64_t k0 = 0; k0 < k_cols; k0 += kBlockK) {
        int64_t cols = std::min(kBlockK, k_cols - k0);
        int64_t panel_floats = (cols + 7) / 8 * kPanelRows * 8;
        bool first = k0 == 0;
        bool last = k0 + cols == k_cols;
        for (int64_t p = 0; p < num_panels; ++p) {
          int64_t row = n0 + p * kPanelRows;
          pack_panel(data + row * w.row_stride + k0, w.row_stride,
                     std::min<int64_t>(kPanelRows, n0 + block_rows - row), cols,
                     panels + p * panel_floats);
        }
        for (int64_t p = 0; p < num_panels; ++p) {
          int64_t row = n0 + p * kPanelRows;
          int64_t valid_rows = std::min<int64_t>(kPanelRows, n0 + block_rows - row);
          const float* panel = panels + p * panel_floats;
          float* panel_sums = sums + p * kPanelRows * 8;
          auto run = [&]<int MT>(int64_t i) {
            gemm_micro<MT>(x + (t0 + i) * k_cols + k0, k_cols, cols, panel,
                           panel_sums + i * sums_stride, sums_stride, first, last,
                           y + (t0 + i) * w.rows + row, w.rows, valid_rows);
          };
          int64_t i = 0;
          for (; i + kTileTokens <= tile_tokens; i += kTileTokens)
            run.template operator()<kTileTokens>(i);
          if (tile_tokens - i == 2) run.template operator()<2>(i);
          if (tile_tokens - i == 1) run.template operator()<1>(i);
        }
      }
    }
  }
}

}  // namespace

void gemv_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                    int64_t n_begin, int64_t n_end) {
  if (w.dtype == DType::BF16) {
    gemv_rows<bf16_t>(x, num_tokens, w, y, n_begin, n_end);
  } else {
    gemv_rows<float>(x, num_tokens, w, y, n_begin, n_end);
  }
}

void gemm_rows_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                    int64_t n_begin, int64_t n_end) {
  if (w.dtype == DType::BF16) {
    gemm_rows<bf16_t>(x, num_tokens, w, y, n_begin, n_end);
  } else {
    gemm_rows<float>(x, num_tokens, w, y, n_begin, n_end);
  }
}

}  // namespace epserve::matmul_detail
