#include "kernels/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve {
namespace attention_detail {
namespace {

float reduce_lanes(const float (&acc)[8]) {
  float lo = (acc[0] + acc[4]) + (acc[2] + acc[6]);
  float hi = (acc[1] + acc[5]) + (acc[3] + acc[7]);
  return lo + hi;
}

// acc[l] = fma(q[8b + l], k[8b + l], acc[l]) over the blocks of dim elements, zero-padded.
void lane_dot(const float* q, const float* k, int64_t dim, float (&acc)[8]) {
  for (int64_t d0 = 0; d0 < dim; d0 += 8) {
    for (int l = 0; l < 8; ++l) {
      int64_t d = d0 + l;
      acc[l] = std::fma(d < dim ? q[d] : 0.0f, d < dim ? k[d] : 0.0f, acc[l]);
    }
  }
}

// Scratch for one block's scores, per thread.
thread_local std::vector<float> t_scores;

}  // namespace

bool avx2_available() {
  return cpu_has_avx2_fma();
}

void scores_scalar(const QueryRows& q, int64_t rows, const SlotRows& keys, int64_t len, float scale,
                   float* scores, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t s = 0; s < len; ++s) {
      const float* k = keys.row(s);
      float acc[8] = {};
      lane_dot(q.part1 + r * q.stride1, k, q.dim1, acc);
      if (q.dim2 > 0) lane_dot(q.part2 + r * q.stride2, k + q.dim1, q.dim2, acc);
      scores[r * ld + s] = reduce_lanes(acc) * scale;
    }
  }
}

void softmax_rows_scalar(float* scores, int64_t ld, int64_t rows, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    float* x = scores + r * ld;
    float m = x[0];
    for (int64_t s = 1; s < len; ++s) m = x[s] > m ? x[s] : m;
    float acc[8] = {};
    for (int64_t s = 0; s < len; ++s) {
      x[s] = softmax_exp(x[s] - m);
      acc[s % 8] += x[s];
    }
    float inv = 1.0f / reduce_lanes(acc);
    for (int64_t s = 0; s < len; ++s) x[s] *= inv;
  }
}

void weighted_sum_scalar(const float* p, int64_t ld, int64_t rows, const SlotRows& values,
                         int64_t len, int64_t dim, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * out_stride;
    std::fill(o, o + dim, 0.0f);
    for (int64_t s = 0; s < len; ++s) {
      const float* v = values.row(s);
      float w = p[r * ld + s];
      for (int64_t d = 0; d < dim; ++d) o[d] = std::fma(w, v[d], o[d]);
    }
  }
}

void run_attention(const AttentionProblem& pb, AttentionPath path, bool parallel) {
  if (path == AttentionPath::kAuto) {
    path = avx2_available() ? AttentionPath::kAvx2 : AttentionPath::kScalar;
  }
  EPS_CHECK(path == AttentionPath::kScalar || avx2_available(),
            "the AVX2 attention path needs a CPU with AVX2 and FMA");
  const bool avx2 = path == AttentionPath::kAvx2;
  const auto scores = avx2 ? scores_avx2 : scores_scalar;
  const auto softmax = avx2 ? softmax_rows_avx2 : softmax_rows_scalar;
  const auto weighted_sum = avx2 ? weighted_sum_avx2 : weighted_sum_scalar;
  const int64_t num_new = pb.seq.num_new;
  const int64_t hpg = pb.heads_per_group;
  if (num_new <= 0 || hpg <= 0 || pb.num_kv_groups <= 0) return;

  // Blocks of heads: as large as kHeadBlock (keys re-read from cache once per block) unless
  // that leaves too few blocks to keep every thread busy.
  const int64_t threads = parallel ? ThreadPool::global().num_threads() : 1;
  int64_t block = std::min(kHeadBlock, hpg);
  auto items_for = [&](int64_t b) { return num_new * pb.num_kv_groups * ((hpg + b - 1) / b); };
  while (block > 1 && items_for(block) < 2 * threads) block = (block + 1) / 2;
  const int64_t blocks_per_group = (hpg + block - 1) / block;
  const int64_t items_per_token = pb.num_kv_groups * blocks_per_group;
  const int64_t num_items = num_new * items_per_token;

  auto run_item = [&](int64_t w) {
    const int64_t i = num_new - 1 - w / items_per_token;  // longest rows first
    const int64_t g = (w % items_per_token) / blocks_per_group;
    const int64_t j0 = (w % blocks_per_group) * block;
    const int64_t rows = std::min(block, hpg - j0);
    const int64_t h0 = g * hpg + j0;
    const int64_t len = pb.seq.num_past + i + 1;  // causal: positions 0 .. num_past + i
    QueryRows q{pb.q1.at(i, h0),   pb.q1.head_stride,
                pb.dim1,           pb.dim2 > 0 ? pb.q2.at(i, h0) : nullptr,
                pb.q2.head_stride, pb.dim2};
    SlotRows keys{pb.keys + g * pb.group_offset, pb.seq.slots, pb.row_stride};
    SlotRows values{pb.values + g * pb.group_offset, pb.seq.slots, pb.row_stride};
    std::vector<float>& buf = t_scores;
    if (static_cast<int64_t>(buf.size()) < rows * len) buf.resize(rows * len);
    scores(q, rows, keys, len, pb.scale, buf.data(), len);
    softmax(buf.data(), len, rows, len);
    weighted_sum(buf.data(), len, rows, values, len, pb.value_dim, pb.out.at(i, h0),
                 pb.out.head_stride);
  };
  if (threads <= 1 || num_items <= 1) {
    for (int64_t w = 0; w < num_items; ++w) run_item(w);
    return;
  }
  // Items go to whichever thread is free: their costs differ (causal lengths) and which thread
  // runs an item does not change its bits.
  std::atomic<int64_t> next{0};
  ThreadPool::global().parallel_for(std::min(threads, num_items), [&](int64_t, int64_t) {
    for (int64_t w = next.fetch_add(1); w < num_items; w = next.fetch_add(1)) run_item(w);
  });
}

}  // namespace attention_detail

using attention_detail::AttentionPath;
using attention_detail::AttentionProblem;

void attention_gqa(QueryView q, const SeqSlots& seq, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, const float* k_cache, const float* v_cache,
                   int64_t kv_row_stride, float scale, OutputView out) {
  EPS_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0,
            "{} query heads do not split into groups over {} kv heads", num_heads, num_kv_heads);
  AttentionProblem pb{.seq = seq,
                      .num_kv_groups = num_kv_heads,
                      .heads_per_group = num_heads / num_kv_heads,
                      .q1 = q,
                      .q2 = {},
                      .dim1 = head_dim,
                      .dim2 = 0,
                      .keys = k_cache,
                      .values = v_cache,
                      .group_offset = head_dim,
                      .row_stride = kv_row_stride,
                      .value_dim = head_dim,
                      .scale = scale,
                      .out = out};
  attention_detail::run_attention(pb, AttentionPath::kAuto, true);
}

void attention_mla(QueryView q_latent, QueryView q_rope, const SeqSlots& seq, int64_t num_heads,
                   int64_t kv_lora_rank, int64_t rope_dim, const float* latent_cache, float scale,
                   OutputView out_latent) {
  AttentionProblem pb{.seq = seq,
                      .num_kv_groups = 1,
                      .heads_per_group = num_heads,
                      .q1 = q_latent,
                      .q2 = q_rope,
                      .dim1 = kv_lora_rank,
                      .dim2 = rope_dim,
                      .keys = latent_cache,
                      .values = latent_cache,
                      .group_offset = 0,
                      .row_stride = kv_lora_rank + rope_dim,
                      .value_dim = kv_lora_rank,
                      .scale = scale,
                      .out = out_latent};
  attention_detail::run_attention(pb, AttentionPath::kAuto, true);
}

void attention_gqa(const float* q, const SeqSlots& seq, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, const float* k_cache, const float* v_cache,
                   int64_t kv_row_stride, float scale, float* out) {
  attention_gqa(QueryView{q, num_heads * head_dim, head_dim}, seq, num_heads, num_kv_heads,
                head_dim, k_cache, v_cache, kv_row_stride, scale,
                OutputView{out, num_heads * head_dim, head_dim});
}

void attention_mla(const float* q_latent, const float* q_rope, const SeqSlots& seq,
                   int64_t num_heads, int64_t kv_lora_rank, int64_t rope_dim,
                   const float* latent_cache, float scale, float* out_latent) {
  attention_mla(QueryView{q_latent, num_heads * kv_lora_rank, kv_lora_rank},
                QueryView{q_rope, num_heads * rope_dim, rope_dim}, seq, num_heads, kv_lora_rank,
                rope_dim, latent_cache, scale,
                OutputView{out_latent, num_heads * kv_lora_rank, kv_lora_rank});
}

}  // namespace epserve
