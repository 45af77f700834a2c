// AVX2 + FMA GEMM path of matmul (many tokens), in the canonical order of matmul_internal.h.
//
// Lane l of y[t, n]'s canonical sum is sum_b x[t, 8b + l] * w[n, 8b + l], accumulated in order
// of b with one rounding per step. For a fixed lane that is an ordinary matrix product over the
// columns l, l + 8, l + 16, ..., so it can use the outer-product register tile of BLAS
// libraries: 6 tokens x 16 weight rows in 12 ymm registers, one broadcast token value times two
// vectors of 8 rows per step. The eight lanes are kept apart (in a small buffer between K
// blocks) and reduced at the end in the canonical order.
//
// Packing: weights are widened to fp32 and transposed in 8 x 8 blocks into per-lane panels
// [lane][step][16 rows]; tokens into [lane][step][6 tokens]. A block of 64 weight rows x 512
// columns (128 KB) is packed when the first token tile reaches it and stays in L2 for the
// others; within it the four panels of one lane (16 KB) stay in L1 while the token groups of
// the tile pass over them.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve::matmul_detail {
namespace {

constexpr int kTileTokens = 6;    // tokens per register tile
constexpr int kPanelRows = 16;    // weight rows per register tile (two ymm)
constexpr int64_t kBlockK = 512;  // columns per K block: 64 steps per lane
constexpr int64_t kBlockT = 48;   // tokens per token tile (multiple of kTileTokens)
constexpr int64_t kBlockN = 64;   // weight rows per row block (multiple of kPanelRows)
constexpr int64_t kTileSums = 8 * kTileTokens * kPanelRows;  // [lane][token][row] of one tile

// A per-thread float buffer, 64-byte aligned, grown on demand and kept between calls.
struct Scratch {
  std::unique_ptr<float, void (*)(void*)> buf{nullptr, std::free};
  int64_t capacity = 0;
  float* get(int64_t n) {
    if (n > capacity) {
      buf.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * ((n + 15) / 16 * 16))));
      capacity = n;
    }
    return buf.get();
  }
};

// Spreads prefetches into L2 of up to two address ranges (the tokens and weights of the next
// step) over the micro-tiles of the current step: from L3 or DRAM the tile would stall on them.
class StepPrefetcher {
 public:
  void start(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes, int64_t calls) {
    a_ = static_cast<const char*>(a);
    b_ = static_cast<const char*>(b);
    a_lines_ = a ? a_bytes / 64 : 0;
    lines_ = a_lines_ + (b ? b_bytes / 64 : 0);
    next_ = 0;
    per_call_ = (lines_ + calls - 1) / std::max<int64_t>(1, calls);
  }
  void step() {
    for (int64_t end = std::min(lines_, next_ + per_call_); next_ < end; ++next_) {
      const char* p = next_ < a_lines_ ? a_ + next_ * 64 : b_ + (next_ - a_lines_) * 64;
      _mm_prefetch(p, _MM_HINT_T1);
    }
  }

 private:
  const char *a_ = nullptr, *b_ = nullptr;
  int64_t a_lines_ = 0, lines_ = 0, next_ = 0, per_call_ = 0;
};

// v[i] = row i of an 8 x 8 block becomes v[l] = column l.
inline void transpose8(__m256 (&v)[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    v[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// Packs rows [0, valid_rows) (of kPanelRows) x `cols` columns of w into [lane][blocks][16]:
// entry (l, b, r) = w[r, 8b + l], zero for missing rows and for columns past `cols`.
template <typename W>
void pack_panel(const W* w, int64_t row_stride, int64_t valid_rows, int64_t cols, int64_t blocks,
                bool prefetch_next, float* dst) {
  if (prefetch_next) {
    // The same columns one block later, into L2: the rows are read in short pieces, too many
    // streams at once for the hardware prefetchers.
    for (int64_t r = 0; r < valid_rows; ++r) {
      const char* next = reinterpret_cast<const char*>(w + r * row_stride + cols);
      for (size_t b = 0; b < cols * sizeof(W); b += 64) _mm_prefetch(next + b, _MM_HINT_T1);
    }
  }
  for (int half = 0; half < 2; ++half) {
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t rest = cols - b * 8;
      __m256 v[8];
      for (int r = 0; r < 8; ++r) {
        int64_t row = half * 8 + r;
        const W* p = w + row * row_stride + b * 8;
        v[r] = row >= valid_rows ? _mm256_setzero_ps() : rest >= 8 ? load8(p) : load_tail(p, rest);
      }
      transpose8(v);
      for (int l = 0; l < 8; ++l)
        _mm256_store_ps(dst + (l * blocks + b) * kPanelRows + half * 8, v[l]);
    }
  }
}

// Layout of the packed tokens: groups of kTileTokens tokens (the last padded with zero tokens),
// K in blocks of kBlockK columns; block j of group g is [lane][blocks_j][kTileTokens].
struct TokenPacking {
  int64_t num_groups, k_cols;
  int64_t blocks(int64_t j) const { return (std::min(kBlockK, k_cols - j * kBlockK) + 7) / 8; }
  int64_t offset(int64_t j, int64_t g) const {
    return (j * num_groups * (kBlockK / 8) + g * blocks(j)) * 8 * kTileTokens;
  }
  int64_t size() const { return num_groups * ((k_cols + 7) / 8) * 8 * kTileTokens; }
};

void pack_tokens(const float* x, int64_t k_cols, int64_t valid_tokens, int64_t k0, int64_t cols,
                 int64_t blocks, float* dst) {
  for (int64_t i = 0; i < kTileTokens; ++i) {
    const float* row = i < valid_tokens ? x + i * k_cols + k0 : nullptr;
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t l = 0; l < 8; ++l) {
        int64_t k = b * 8 + l;
        dst[(l * blocks + b) * kTileTokens + i] = row && k < cols ? row[k] : 0.0f;
      }
    }
  }
}

// One lane of one register tile over `blocks` steps: sums[token][row] += x[token] * w[row] per
// step, starting from zero on the first K block.
inline void gemm_micro(const float* xp, const float* wp, int64_t blocks, float* sums, bool first) {
  __m256 acc[kTileTokens][2];
#pragma GCC unroll 16
  for (int i = 0; i < kTileTokens; ++i) {
    acc[i][0] = first ? _mm256_setzero_ps() : _mm256_load_ps(sums + i * kPanelRows);
    acc[i][1] = first ? _mm256_setzero_ps() : _mm256_load_ps(sums + i * kPanelRows + 8);
  }
  for (int64_t b = 0; b < blocks; ++b, xp += kTileTokens, wp += kPanelRows) {
    __m256 w0 = _mm256_load_ps(wp), w1 = _mm256_load_ps(wp + 8);
#pragma GCC unroll 16
    for (int i = 0; i < kTileTokens; ++i) {
      __m256 xb = _mm256_broadcast_ss(xp + i);
      acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < kTileTokens; ++i) {
    _mm256_store_ps(sums + i * kPanelRows, acc[i][0]);
    _mm256_store_ps(sums + i * kPanelRows + 8, acc[i][1]);
  }
}

// y for one tile from its eight lane sums, in the canonical reduction order.
void reduce_tile(const float* sums, int64_t valid_tokens, int64_t valid_rows, float* y,
                 int64_t y_stride) {
  for (int64_t i = 0; i < valid_tokens; ++i) {
    alignas(32) float out[kPanelRows];
    for (int h = 0; h < 2; ++h) {
      __m256 v[8];
      for (int l = 0; l < 8; ++l)
        v[l] = _mm256_load_ps(sums + (l * kTileTokens + i) * kPanelRows + h * 8);
      __m256 lo = _mm256_add_ps(_mm256_add_ps(v[0], v[4]), _mm256_add_ps(v[2], v[6]));
      __m256 hi = _mm256_add_ps(_mm256_add_ps(v[1], v[5]), _mm256_add_ps(v[3], v[7]));
      _mm256_store_ps(out + h * 8, _mm256_add_ps(lo, hi));
    }
    std::copy(out, out + valid_rows, y + i * y_stride);
  }
}

template <typename W>
void gemm_rows(const float* xpack, const TokenPacking& packing, int64_t num_tokens,
               const WeightView& w, float* y, int64_t n_begin, int64_t n_end) {
  static thread_local Scratch strip_buffer, sums_buffer;
  const int64_t k_cols = w.cols;
  const int64_t k_blocks = (k_cols + kBlockK - 1) / kBlockK;
  float* strip = strip_buffer.get(kBlockN * ((k_cols + 7) / 8 * 8));
  float* sums = sums_buffer.get(kBlockT / kTileTokens * (kBlockN / kPanelRows) * kTileSums);
  const W* data = static_cast<const W*>(w.data);
  constexpr int64_t kGroupsPerTile = kBlockT / kTileTokens;
  StepPrefetcher prefetcher;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBlockN) {
    int64_t block_rows = std::min(kBlockN, n_end - n0);
    int64_t num_panels = (block_rows + kPanelRows - 1) / kPanelRows;
    for (int64_t g0 = 0; g0 < packing.num_groups; g0 += kGroupsPerTile) {
      int64_t g1 = std::min(packing.num_groups, g0 + kGroupsPerTile);
      for (int64_t j = 0; j < k_blocks; ++j) {
        int64_t blocks = packing.blocks(j);
        bool first = j == 0;
        bool last = j == k_blocks - 1;
        // Strip: K block j at j * kBlockN * kBlockK, panel p at p * 8 * blocks * kPanelRows.
        float* block = strip + j * kBlockN * kBlockK;
        if (g0 == 0) {
          int64_t k0 = j * kBlockK;
          for (int64_t p = 0; p < num_panels; ++p) {
            int64_t row = n0 + p * kPanelRows;
            pack_panel(data + row * w.row_stride + k0, w.row_stride,
                       std::min<int64_t>(kPanelRows, n0 + block_rows - row),
                       std::min(kBlockK, k_cols - k0), blocks, !last,
                       block + p * 8 * blocks * kPanelRows);
          }
        }
        // The next step: K block j + 1 of this token tile, or block 0 of the next tile. Its
        // weight block is packed already unless this is the first tile.
        {
          int64_t nj = last ? 0 : j + 1;
          int64_t ng0 = last ? g1 : g0;
          int64_t ng1 = std::min(packing.num_groups, ng0 + kGroupsPerTile);
          const float* nx = ng0 < ng1 ? xpack + packing.offset(nj, ng0) : nullptr;
          int64_t nx_bytes = (ng1 - ng0) * packing.blocks(nj) * 8 * kTileTokens * 4;
          const float* nw = (last ? ng0 < ng1 : g0 > 0) ? strip + nj * kBlockN * kBlockK : nullptr;
          int64_t nw_bytes = num_panels * 8 * packing.blocks(nj) * kPanelRows * 4;
          prefetcher.start(nx, nx_bytes, nw, nw_bytes, 8 * (g1 - g0) * num_panels);
        }
        // Per lane, the panels of all rows (16 KB) stay in L1 while each token group (1.5 KB)
        // passes over them.
        for (int l = 0; l < 8; ++l) {
          for (int64_t g = g0; g < g1; ++g) {
            const float* xp = xpack + packing.offset(j, g) + l * blocks * kTileTokens;
            for (int64_t p = 0; p < num_panels; ++p) {
              prefetcher.step();
              gemm_micro(
                  xp, block + (p * 8 + l) * blocks * kPanelRows, blocks,
                  sums + ((g - g0) * num_panels + p) * kTileSums + l * kTileTokens * kPanelRows,
                  first);
            }
          }
        }
        if (!last) continue;
        for (int64_t g = g0; g < g1; ++g) {
          int64_t t = g * kTileTokens;
          for (int64_t p = 0; p < num_panels; ++p) {
            int64_t row = n0 + p * kPanelRows;
            reduce_tile(sums + ((g - g0) * num_panels + p) * kTileSums,
                        std::min<int64_t>(kTileTokens, num_tokens - t),
                        std::min<int64_t>(kPanelRows, n0 + block_rows - row), y + t * w.rows + row,
                        w.rows);
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
        pack_tokens(xt + t * k_cols, k_cols, std::min<int64_t>(kTileTokens, tokens - t), k0,
                    std::min(kBlockK, k_cols - k0), packing.blocks(j),
                    xpack + packing.offset(j, g));
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
