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

#include "core/thread_pool.h"
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

// Bytes ahead of the current column at which each weight row is prefetched: a GEMV streams
// several rows at once, and the hardware prefetchers lose each stream at every 4 KB page.
// Measured best on Zen 3 for BF16 rows; F32 rows are consumed twice as fast.
template <int MT, typename W>
constexpr int64_t prefetch_bytes() {
  return (MT == 1 ? 256 : 512) * static_cast<int64_t>(sizeof(W)) / 2;
}

// One block of eight columns for every (token, row) pair of the tile.
template <int MT, int MN, typename W>
inline void gemv_block(const float* x, int64_t k_cols, const W* w, int64_t row_stride, int64_t k,
                       __m256 (&acc)[MT][MN]) {
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
  // 64 bytes of every row per step: one cache line of BF16, two of F32.
  constexpr int64_t kStep = 64 / sizeof(W) < 32 ? 32 : 64 / sizeof(W);
  for (; k + kStep <= k_cols; k += kStep) {
#pragma GCC unroll 16
    for (int n = 0; n < MN; ++n) {
      const char* line = reinterpret_cast<const char*>(w + n * row_stride + k);
#pragma GCC unroll 2
      for (size_t b = 0; b < kStep * sizeof(W); b += 64) {
        _mm_prefetch(line + prefetch_bytes<MT, W>() + b, _MM_HINT_T0);
      }
    }
#pragma GCC unroll 8
    for (int64_t i = 0; i < kStep; i += 8) gemv_block<MT, MN>(x, k_cols, w, row_stride, k + i, acc);
  }
  for (; k + 8 <= k_cols; k += 8) gemv_block<MT, MN>(x, k_cols, w, row_stride, k, acc);
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
  for (int64_t t0 = 0; t0 < num_tokens; t0 += kGemvGroupTokens) {
    const float* xt = x + t0 * w.cols;
    float* yt = y + t0 * w.rows;
    // Twelve lane sums in registers per tile: enough rows streaming at once to keep DRAM busy.
    switch (std::min(kGemvGroupTokens, num_tokens - t0)) {
      case 1:
        gemv_token_group<1, 12, W>(xt, w, yt, n_begin, n_end);
        break;
      case 2:
        gemv_token_group<2, 6, W>(xt, w, yt, n_begin, n_end);
        break;
      case 3:
        gemv_token_group<3, 4, W>(xt, w, yt, n_begin, n_end);
        break;
      default:
        gemv_token_group<4, 3, W>(xt, w, yt, n_begin, n_end);
        break;
    }
  }
}

// ---- GEMM ----

// Blocking, tuned on Zen 3 (32 KB L1, 512 KB L2 per core). A micro-tile holds 3 x 4 lane sums
// in 12 of the 16 ymm registers; one token group (3 x 512 columns, 6 KB) stays in L1 while it
// passes over the packed weight block (64 rows x 512 columns, 128 KB) in L2.
constexpr int kPanelRows = 4;     // weight rows per packed panel (micro-tile width)
constexpr int kTileTokens = 3;    // tokens per micro-tile
constexpr int64_t kBlockK = 512;  // columns per K block (multiple of 8)
constexpr int64_t kBlockT = 48;   // tokens per token tile (multiple of kTileTokens)
constexpr int64_t kBlockN = 64;   // weight rows per row block (multiple of kPanelRows)

// Packs `valid` rows x `cols` columns of a row-major matrix (row stride `stride`) into
// [cols/8][R][8] fp32: block b holds columns 8b..8b+7 of each of the R rows. Missing rows and
// the columns past `cols` in the last block are zero.
template <int R, typename T>
void pack_rows(const T* src, int64_t stride, int64_t valid, int64_t cols, float* dst,
               bool prefetch_next = false) {
  int64_t full = cols / 8;
  int64_t rest = cols % 8;
  int64_t blocks = full + (rest ? 1 : 0);
  for (int r = 0; r < R; ++r) {
    float* out = dst + r * 8;
    if (r >= valid) {
      for (int64_t b = 0; b < blocks; ++b) _mm256_store_ps(out + b * R * 8, _mm256_setzero_ps());
      continue;
    }
    const T* row = src + r * stride;
    if (prefetch_next) {
      // The same columns one block later, into L2: weight rows are read in short pieces, too
      // many streams at once for the hardware prefetchers.
      const char* next = reinterpret_cast<const char*>(row + cols);
      for (size_t b = 0; b < cols * sizeof(T); b += 64) _mm_prefetch(next + b, _MM_HINT_T1);
    }
    for (int64_t b = 0; b < full; ++b) _mm256_store_ps(out + b * R * 8, load8(row + b * 8));
    if (rest) _mm256_store_ps(out + full * R * 8, load_tail(row + full * 8, rest));
  }
}

// One micro-tile: kTileTokens packed tokens x kPanelRows packed rows over `blocks` blocks of
// eight columns. The lane sums start at zero (first K block) or come from `sums`; they go back
// to `sums`, or after the last K block are reduced into y for the valid tokens and rows.
inline void gemm_micro(const float* xp, const float* wp, int64_t blocks, float* sums, bool first,
                       bool last, float* y, int64_t y_stride, int64_t valid_tokens,
                       int64_t valid_rows) {
  constexpr int MT = kTileTokens, NR = kPanelRows;
  __m256 acc[MT][NR];
#pragma GCC unroll 16
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) {
      acc[t][n] = first ? _mm256_setzero_ps() : _mm256_load_ps(sums + (t * NR + n) * 8);
    }
  for (int64_t b = 0; b < blocks; ++b, xp += MT * 8, wp += NR * 8) {
    __m256 xv[MT];
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t) xv[t] = _mm256_load_ps(xp + t * 8);
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) {
      __m256 wv = _mm256_load_ps(wp + n * 8);
#pragma GCC unroll 16
      for (int t = 0; t < MT; ++t) acc[t][n] = _mm256_fmadd_ps(xv[t], wv, acc[t][n]);
    }
  }
  if (last) {
    for (int t = 0; t < valid_tokens; ++t)
      for (int n = 0; n < valid_rows; ++n) y[t * y_stride + n] = reduce8(acc[t][n]);
  } else {
#pragma GCC unroll 16
    for (int t = 0; t < MT; ++t)
#pragma GCC unroll 16
      for (int n = 0; n < NR; ++n) _mm256_store_ps(sums + (t * NR + n) * 8, acc[t][n]);
  }
}

// A per-thread buffer of floats, 64-byte aligned, grown on demand and kept between calls.
float* scratch_floats(std::unique_ptr<float, void (*)(void*)>& buf, int64_t& capacity, int64_t n) {
  if (n > capacity) {
    buf.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * ((n + 15) / 16 * 16))));
    capacity = n;
  }
  return buf.get();
}

struct Scratch {
  std::unique_ptr<float, void (*)(void*)> buf{nullptr, std::free};
  int64_t capacity = 0;
  float* get(int64_t n) { return scratch_floats(buf, capacity, n); }
};

// Layout of the packed tokens: groups of kTileTokens tokens (the last padded with zero tokens),
// K in blocks of kBlockK columns; K block j holds, for each group, [blocks_j][kTileTokens][8].
struct TokenPacking {
  int64_t num_groups, k_cols;
  int64_t blocks(int64_t j) const { return (std::min(kBlockK, k_cols - j * kBlockK) + 7) / 8; }
  int64_t offset(int64_t j, int64_t g) const {
    return (j * num_groups * (kBlockK / 8) + g * blocks(j)) * kTileTokens * 8;
  }
  int64_t size() const { return num_groups * (k_cols + 7) / 8 * kTileTokens * 8; }
};

// Lane sums of one (token tile, row block) and the packed strip of kBlockN weight rows x K.
struct GemmScratch {
  Scratch strip, sums;
};

// y for output rows [n_begin, n_end) and the tokens of `packing` (y rows num_tokens).
template <typename W>
void gemm_rows(const float* xpack, const TokenPacking& packing, int64_t num_tokens,
               const WeightView& w, float* y, int64_t n_begin, int64_t n_end) {
  static thread_local GemmScratch scratch;
  const int64_t k_cols = w.cols;
  const int64_t k_blocks = (k_cols + kBlockK - 1) / kBlockK;
  const int64_t k_pad = (k_cols + 7) / 8 * 8;
  float* strip = scratch.strip.get(kBlockN * k_pad);
  float* sums = scratch.sums.get(kBlockT * kBlockN * 8);
  const W* data = static_cast<const W*>(w.data);
  constexpr int64_t kTileFloats = kTileTokens * kPanelRows * 8;  // lane sums of one micro-tile
  constexpr int64_t kGroupsPerTile = kBlockT / kTileTokens;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBlockN) {
    int64_t block_rows = std::min(kBlockN, n_end - n0);
    int64_t num_panels = (block_rows + kPanelRows - 1) / kPanelRows;
    // The strip: K block j, panel p at (j * kBlockN * kBlockK + p * blocks_j * 8 * kPanelRows).
    // Block j is packed when the first token tile reaches it, so with few tokens it is used
    // straight from L2; later tiles reuse it.
    for (int64_t g0 = 0; g0 < packing.num_groups; g0 += kGroupsPerTile) {
      int64_t g1 = std::min(packing.num_groups, g0 + kGroupsPerTile);
      for (int64_t j = 0; j < k_blocks; ++j) {
        int64_t blocks = packing.blocks(j);
        bool first = j == 0;
        bool last = j == k_blocks - 1;
        if (g0 == 0) {
          int64_t k0 = j * kBlockK;
          int64_t cols = std::min(kBlockK, k_cols - k0);
          for (int64_t p = 0; p < num_panels; ++p) {
            int64_t row = n0 + p * kPanelRows;
            pack_rows<kPanelRows>(data + row * w.row_stride + k0, w.row_stride,
                                  std::min<int64_t>(kPanelRows, n0 + block_rows - row), cols,
                                  strip + j * kBlockN * kBlockK + p * blocks * 8 * kPanelRows,
                                  /*prefetch_next=*/!last);
          }
        }
        // Each group of tokens (in L1) passes over every panel of the block (in L2).
        for (int64_t g = g0; g < g1; ++g) {
          int64_t t = g * kTileTokens;
          int64_t valid_tokens = std::min<int64_t>(kTileTokens, num_tokens - t);
          const float* tokens = xpack + packing.offset(j, g);
          for (int64_t p = 0; p < num_panels; ++p) {
            int64_t row = n0 + p * kPanelRows;
            gemm_micro(tokens, strip + j * kBlockN * kBlockK + p * blocks * 8 * kPanelRows, blocks,
                       sums + ((g - g0) * num_panels + p) * kTileFloats, first, last,
                       y + t * w.rows + row, w.rows, valid_tokens,
                       std::min<int64_t>(kPanelRows, n0 + block_rows - row));
          }
        }
      }
    }
  }
}

// Tokens per chunk: the packed tokens of one chunk stay under ~64 MB.
int64_t chunk_tokens(int64_t k_cols) {
  int64_t groups = std::max<int64_t>(1, (int64_t{16} << 20) / ((k_cols + 7) / 8 * 8) / kBlockT);
  return groups * kBlockT;
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

void gemm_avx2(const float* x, int64_t num_tokens, const WeightView& w, float* y,
               int64_t min_rows_per_thread) {
  static thread_local Scratch packed_tokens;
  ThreadPool& pool = ThreadPool::global();
  const int64_t k_cols = w.cols;
  const int64_t k_blocks = (k_cols + kBlockK - 1) / kBlockK;
  const int64_t step = chunk_tokens(k_cols);
  for (int64_t t0 = 0; t0 < num_tokens; t0 += step) {
    int64_t tokens = std::min(step, num_tokens - t0);
    const float* xt = x + t0 * k_cols;
    TokenPacking packing{(tokens + kTileTokens - 1) / kTileTokens, k_cols};
    float* xpack = packed_tokens.get(packing.size());
    pool.parallel_for(packing.num_groups * k_blocks, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        int64_t g = i / k_blocks, j = i % k_blocks;
        int64_t t = g * kTileTokens, k0 = j * kBlockK;
        pack_rows<kTileTokens>(xt + t * k_cols + k0, k_cols,
                               std::min<int64_t>(kTileTokens, tokens - t),
                               std::min(kBlockK, k_cols - k0), xpack + packing.offset(j, g));
      }
    });
    pool.parallel_for(
        w.rows,
        [&](int64_t n0, int64_t n1) {
          if (w.dtype == DType::BF16) {
            gemm_rows<bf16_t>(xpack, packing, tokens, w, y + t0 * w.rows, n0, n1);
          } else {
            gemm_rows<float>(xpack, packing, tokens, w, y + t0 * w.rows, n0, n1);
          }
        },
        min_rows_per_thread);
  }
}

}  // namespace epserve::matmul_detail
