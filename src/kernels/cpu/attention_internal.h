// Internals of attention shared by the driver (attention.cpp), the vector kernels
// (attention_avx2.cpp) and the tests.
//
// The driver cuts the work into blocks of up to kHeadBlock query heads of one new token that
// read the same key/value rows (one kv head's group under GQA, all heads under MLA), and for
// each block runs three steps whose results each path computes in one canonical order:
//   1. scores: for every (head r, key s), eight fp32 lane sums start at +0; for each block b of
//      eight elements of the query's first part, acc[l] = fma(q1[8b + l], k[8b + l], acc[l]),
//      then the same lane sums go on over the second part (the rope part under MLA; none under
//      GQA) against the key elements after the first part; a last partial block is padded with
//      zeros. score = (((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))) * scale.
//   2. softmax of each head's scores over keys 0..len-1: m = max; e_s = exp(score_s - m) (the
//      polynomial exp below, the same operations in every path); eight lane sums start at +0
//      and lane l adds e_s for s = l, l + 8, l + 16, ... in order; sum = the lane sums reduced
//      as in step 1; p_s = e_s * (1 / sum).
//   3. output: out[d] = fma(p_{len-1}, v_{len-1}[d], ... fma(p_1, v_1[d], fma(p_0, v_0[d], +0))),
//      one fp32 chain in key order per output element.
// None of these depends on which heads or tokens share a block, a tile or a thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention.h"

namespace epserve::attention_detail {

// Query heads of one token that the driver runs together over the same keys.
constexpr int64_t kHeadBlock = 8;

enum class AttentionPath { kAuto, kScalar, kAvx2 };

// Row s of a key (or value) list: base + slots[s] * stride.
struct SlotRows {
  const float* base;
  const int32_t* slots;
  int64_t stride;
  const float* row(int64_t s) const { return base + slots[s] * stride; }
};

// `rows` query vectors in two parts: row r is [part1 + r * stride1 (dim1 floats),
// part2 + r * stride2 (dim2 floats)]; keys are rows of dim1 + dim2 floats in the same order.
struct QueryRows {
  const float* part1;
  int64_t stride1;
  int64_t dim1;
  const float* part2;
  int64_t stride2;
  int64_t dim2;
};

// scores[r * ld + s] for r < rows, s < len (step 1).
void scores_scalar(const QueryRows& q, int64_t rows, const SlotRows& keys, int64_t len, float scale,
                   float* scores, int64_t ld);
void scores_avx2(const QueryRows& q, int64_t rows, const SlotRows& keys, int64_t len, float scale,
                 float* scores, int64_t ld);

// Step 2 on rows of scores[r * ld + s], s < len, in place.
void softmax_rows_scalar(float* scores, int64_t ld, int64_t rows, int64_t len);
void softmax_rows_avx2(float* scores, int64_t ld, int64_t rows, int64_t len);

// out[r * out_stride + d] for r < rows, d < dim (step 3) from p[r * ld + s] and the first dim
// floats of each value row.
void weighted_sum_scalar(const float* p, int64_t ld, int64_t rows, const SlotRows& values,
                         int64_t len, int64_t dim, float* out, int64_t out_stride);
void weighted_sum_avx2(const float* p, int64_t ld, int64_t rows, const SlotRows& values,
                       int64_t len, int64_t dim, float* out, int64_t out_stride);

// True when the CPU runs the AVX2 path (AVX2 and FMA).
bool avx2_available();

// The softmax exponential for x <= 0 (inputs below -87.3 give about 1.2e-38, not 0): x = n ln2
// + r with |r| <= ln2 / 2, e^r = 1 + r + r^2 P(r) (Cephes' minimax P), 2^n through the exponent
// bits. Written with explicit fma so the AVX2 lanes compute the same bits; within 2 ulp of
// std::exp.
inline float softmax_exp(float x) {
  x = std::fmax(x, -87.3f);
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(-n, 0.693359375f, x);
  r = std::fma(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  float e = std::fma(p, r * r, r + 1.0f);
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

// The driver with a chosen path (kAvx2 throws without AVX2): all (token, head) results of one
// sequence. `parallel` false keeps it on the calling thread.
struct AttentionProblem {
  SeqSlots seq;
  int64_t num_kv_groups;    // kv heads (GQA) or 1 (MLA)
  int64_t heads_per_group;  // query heads reading one kv head; head h is in group h / this
  TokenHeadView<const float> q1, q2;
  int64_t dim1, dim2;  // dim2 is 0 without a second query part
  const float* keys;   // group g's key rows start at keys + g * group_offset
  const float* values;
  int64_t group_offset;
  int64_t row_stride;  // floats between the rows of consecutive slots
  int64_t value_dim;
  float scale;
  TokenHeadView<float> out;
};
void run_attention(const AttentionProblem& problem, AttentionPath path, bool parallel);

}  // namespace epserve::attention_detail
