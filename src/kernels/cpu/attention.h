// Causal attention of a sequence's new tokens over its cached keys and values, in fp32.
// The KV cache is a pool of token slots; a sequence's tokens live at slots[0..num_past+num_new)
// in position order (pages of the paged cache expand to these slot ids).
//  - GQA (Qwen3): per slot, k and v rows of [num_kv_heads, head_dim].
//  - MLA (DeepSeek-V3), absorbed form: per slot one latent row [kv_lora_rank + rope_dim]
//    (normalised compressed kv, then the rotated shared rope key). Queries arrive already
//    absorbed (q_nope · W_uk per head, [kv_lora_rank]) with their rope part; the output is the
//    attention-weighted latent per head, [kv_lora_rank], which the caller maps through W_uv.
//
// Every (token, head) result is computed in one canonical order (attention_internal.h) that
// depends only on its query, its causal length and the cached rows: not on the other tokens of
// the batch, on how many new tokens share the call (a prefill chunk or a decode step give the
// same bits for the same position), on the thread count or on the vector path.
#pragma once

#include <cstdint>

namespace epserve {

struct SeqSlots {
  const int32_t* slots;  // [num_past + num_new]
  int64_t num_past;
  int64_t num_new;
};

// Per-(token, head) vectors: the one of new token i and head h starts at
// data + i * token_stride + h * head_stride (so queries and outputs can stay inside wider rows).
template <typename T>
struct TokenHeadView {
  T* data = nullptr;
  int64_t token_stride = 0;
  int64_t head_stride = 0;
  T* at(int64_t i, int64_t h) const { return data + i * token_stride + h * head_stride; }
};
using QueryView = TokenHeadView<const float>;
using OutputView = TokenHeadView<float>;

// q (token, head) vectors of head_dim -> out (token, head) vectors of head_dim.
// k_cache / v_cache rows are [num_kv_heads, head_dim] per slot, kv_row_stride floats apart.
// Query head h reads kv head h / (num_heads / num_kv_heads).
void attention_gqa(QueryView q, const SeqSlots& seq, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, const float* k_cache, const float* v_cache,
                   int64_t kv_row_stride, float scale, OutputView out);

// q_latent (token, head) vectors of kv_lora_rank and q_rope ones of rope_dim -> out_latent
// (token, head) vectors of kv_lora_rank. Cache rows are kv_lora_rank + rope_dim floats.
void attention_mla(QueryView q_latent, QueryView q_rope, const SeqSlots& seq, int64_t num_heads,
                   int64_t kv_lora_rank, int64_t rope_dim, const float* latent_cache, float scale,
                   OutputView out_latent);

// Contiguous layouts: q/out [num_new, num_heads, head_dim].
void attention_gqa(const float* q, const SeqSlots& seq, int64_t num_heads, int64_t num_kv_heads,
                   int64_t head_dim, const float* k_cache, const float* v_cache,
                   int64_t kv_row_stride, float scale, float* out);
// q_latent [num_new, num_heads, kv_lora_rank], q_rope [num_new, num_heads, rope_dim] ->
// out_latent [num_new, num_heads, kv_lora_rank].
void attention_mla(const float* q_latent, const float* q_rope, const SeqSlots& seq,
                   int64_t num_heads, int64_t kv_lora_rank, int64_t rope_dim,
                   const float* latent_cache, float scale, float* out_latent);

}  // namespace epserve
