#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"

namespace epserve {
namespace {

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Softmax over scores[0..n) in place; returns nothing, scores become probabilities.
void softmax(float* scores, int64_t n) {
  float max_v = *std::max_element(scores, scores + n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - max_v);
    sum += scores[i];
  }
  float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) scores[i] *= inv;
}

}  // namespace

void attention_gqa(const float* q, const SeqSlots& seq, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, const float* k_cache, const float* v_cache,
                   int64_t kv_row_stride, float scale, float* out) {
  const int64_t group = num_heads / num_kv_heads;
  ThreadPool::global().parallel_for(seq.num_new * num_heads, [&](int64_t w0, int64_t w1) {
    std::vector<float> scores(seq.num_past + seq.num_new);
    for (int64_t w = w0; w < w1; ++w) {
      int64_t i = w / num_heads;
      int64_t h = w % num_heads;
      int64_t kv_head = h / group;
      int64_t len = seq.num_past + i + 1;  // causal: positions 0..num_past+i
      const float* qh = q + (i * num_heads + h) * head_dim;
      for (int64_t s = 0; s < len; ++s) {
        const float* k = k_cache + seq.slots[s] * kv_row_stride + kv_head * head_dim;
        scores[s] = dot(qh, k, head_dim) * scale;
      }
      softmax(scores.data(), len);
      float* o = out + (i * num_heads + h) * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t s = 0; s < len; ++s) {
        const float* v = v_cache + seq.slots[s] * kv_row_stride + kv_head * head_dim;
        float p = scores[s];
        for (int64_t d = 0; d < head_dim; ++d) o[d] += p * v[d];
      }
    }
  });
}

void attention_mla(const float* q_latent, const float* q_rope, const SeqSlots& seq,
                   int64_t num_heads, int64_t kv_lora_rank, int64_t rope_dim,
                   const float* latent_cache, float scale, float* out_latent) {
  const int64_t row = kv_lora_rank + rope_dim;
  ThreadPool::global().parallel_for(seq.num_new * num_heads, [&](int64_t w0, int64_t w1) {
    std::vector<float> scores(seq.num_past + seq.num_new);
    for (int64_t w = w0; w < w1; ++w) {
      int64_t i = w / num_heads;
      int64_t h = w % num_heads;
      int64_t len = seq.num_past + i + 1;
      const float* ql = q_latent + (i * num_heads + h) * kv_lora_rank;
      const float* qr = q_rope + (i * num_heads + h) * rope_dim;
      for (int64_t s = 0; s < len; ++s) {
        const float* c = latent_cache + seq.slots[s] * row;
        scores[s] = (dot(ql, c, kv_lora_rank) + dot(qr, c + kv_lora_rank, rope_dim)) * scale;
      }
      softmax(scores.data(), len);
      float* o = out_latent + (i * num_heads + h) * kv_lora_rank;
      std::fill(o, o + kv_lora_rank, 0.0f);
      for (int64_t s = 0; s < len; ++s) {
        const float* c = latent_cache + seq.slots[s] * row;
        float p = scores[s];
        for (int64_t d = 0; d < kv_lora_rank; ++d) o[d] += p * c[d];
      }
    }
  });
}

}  // namespace epserve
