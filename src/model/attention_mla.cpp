#include "model/attention_mla.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"

namespace epserve {
namespace {

// DeepSeek's latent norms (q_a_layernorm, kv_a_layernorm) use their class default eps, not the
// config's rms_norm_eps (transformers and the original modeling code agree).
constexpr double kLatentNormEps = 1e-6;

}  // namespace

MlaAttention::MlaAttention(const ModelConfig& config, const ModelWeights& weights,
                           const std::string& prefix, Shard heads)
    : mla_(config.mla), hidden_size_(config.hidden_size) {
  EPS_CHECK(config.num_heads % heads.size == 0,
            "{} attention heads do not split over {} tensor-parallel ranks", config.num_heads,
            heads.size);
  num_local_heads_ = heads.length(config.num_heads);
  const int64_t H = hidden_size_;
  const int64_t qk = mla_.qk_head_dim();
  const int64_t nope_v = mla_.qk_nope_head_dim + mla_.v_head_dim;
  const int64_t h0 = heads.begin(config.num_heads);
  const int64_t h1 = heads.end(config.num_heads);
  if (mla_.q_lora_rank > 0) {
    q_a_proj_ = Linear::load(weights, prefix + ".q_a_proj.weight", mla_.q_lora_rank, H);
    q_a_layernorm_ =
        RmsNorm::load(weights, prefix + ".q_a_layernorm.weight", mla_.q_lora_rank, kLatentNormEps);
    q_b_proj_ =
        Linear::load(weights, prefix + ".q_b_proj.weight", config.num_heads * qk, mla_.q_lora_rank)
            .rows(h0 * qk, h1 * qk);
  } else {
    q_proj_ = Linear::load(weights, prefix + ".q_proj.weight", config.num_heads * qk, H)
                  .rows(h0 * qk, h1 * qk);
  }
  kv_a_proj_ = Linear::load(weights, prefix + ".kv_a_proj_with_mqa.weight",
                            mla_.kv_lora_rank + mla_.qk_rope_head_dim, H);
  kv_a_layernorm_ =
      RmsNorm::load(weights, prefix + ".kv_a_layernorm.weight", mla_.kv_lora_rank, kLatentNormEps);
  kv_b_proj_ = Linear::load(weights, prefix + ".kv_b_proj.weight", config.num_heads * nope_v,
                            mla_.kv_lora_rank)
                   .rows(h0 * nope_v, h1 * nope_v);
  if (kv_b_proj_.view().format != WeightFormat::kDense) {
    for (int64_t h = 0; h < num_local_heads_; ++h) {
      w_uk_t_.push_back(kv_b_proj_.transposed_rows(h * nope_v, h * nope_v + mla_.qk_nope_head_dim));
    }
  }
  o_proj_ = Linear::load(weights, prefix + ".o_proj.weight", H, config.num_heads * mla_.v_head_dim)
                .cols(h0 * mla_.v_head_dim, h1 * mla_.v_head_dim);
  rope_ = make_rope_table(rope_params(config.rope), mla_.qk_rope_head_dim);
  scale_ = static_cast<float>(std::pow(static_cast<double>(qk), -0.5) *
                              yarn_softmax_scale_multiplier(rope_params(config.rope)));
}

KvLayout MlaAttention::kv_layout(const ModelConfig& config) {
  return KvLayout{config.mla.kv_lora_rank + config.mla.qk_rope_head_dim, 0};
}

void MlaAttention::forward(const float* x, const ForwardBatch& batch, KvCache& cache, int64_t layer,
                           float* out) const {
  const int64_t T = batch.num_tokens();
  const int64_t nh = num_local_heads_;
  const int64_t nope = mla_.qk_nope_head_dim;
  const int64_t rope_dim = mla_.qk_rope_head_dim;
  const int64_t qk = nope + rope_dim;
  const int64_t lora = mla_.kv_lora_rank;
  const int64_t vdim = mla_.v_head_dim;
  const int64_t nope_v = nope + vdim;
  const int64_t row = lora + rope_dim;

  // Queries: [T, nh, qk]
  std::vector<float> q(T * nh * qk);
  if (mla_.q_lora_rank > 0) {
    std::vector<float> qa(T * mla_.q_lora_rank);  // [T, q_lora]
    q_a_proj_.forward(x, T, qa.data());
    q_a_layernorm_.forward(qa.data(), T, qa.data());
    q_b_proj_.forward(qa.data(), T, q.data());
  } else {
    q_proj_.forward(x, T, q.data());
  }
  // Latent and rope key of the new tokens, written into their cache slots: [T, lora + rope]
  std::vector<float> kv(T * row);
  kv_a_proj_.forward(x, T, kv.data());
  kv_a_layernorm_.forward_strided(kv.data(), row, T, kv.data(), row);
  float* latent_cache = cache.k(layer);
  for (const SequenceInput& s : batch.seqs) {
    for (int64_t i = 0; i < s.num_new; ++i) {
      int64_t t = s.token_offset + i;
      float* k_rope = kv.data() + t * row + lora;
      apply_rope(rope_, batch.positions[t], k_rope, 1, rope_dim);
      apply_rope(rope_, batch.positions[t], q.data() + t * nh * qk + nope, nh, qk);
      std::copy_n(kv.data() + t * row, row, latent_cache + s.slots[s.num_past + i] * row);
    }
  }

  // Absorb W_uk into the queries: q_latent[t, h] = q_nope[t, h] · W_uk[h]  ([T, nh, lora]).
  std::vector<float> q_latent(T * nh * lora);
  ThreadPool::global().parallel_for(nh, [&](int64_t h0, int64_t h1) {
    std::vector<float> q_nope, latent;
    for (int64_t h = h0; h < h1; ++h) {
      if (w_uk_t_.empty()) {
        WeightView w_uk = kv_b_proj_.view().row_slice(h * nope_v, h * nope_v + nope);
        matmul_untransposed(q.data() + h * qk, nh * qk, T, w_uk, q_latent.data() + h * lora,
                            nh * lora);
        continue;
      }
      q_nope.resize(T * nope);
      latent.resize(T * lora);
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(q.data() + (t * nh + h) * qk, nope, &q_nope[t * nope]);
      w_uk_t_[h].forward(q_nope.data(), T, latent.data());  // nested: runs on this thread
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(&latent[t * lora], lora, q_latent.data() + (t * nh + h) * lora);
    }
  });

  // Attention over the latent cache, sequence by sequence, reading the rope part of the queries
  // in place: out_latent [nh, T, lora] (head-major, so each head's rows are one matrix).
  std::vector<float> out_latent(nh * T * lora);
  for (const SequenceInput& s : batch.seqs) {
    SeqSlots seq{s.slots.data(), s.num_past, s.num_new};
    int64_t t0 = s.token_offset;
    attention_mla(QueryView{q_latent.data() + t0 * nh * lora, nh * lora, lora},
                  QueryView{q.data() + t0 * nh * qk + nope, nh * qk, qk}, seq, nh, lora, rope_dim,
                  latent_cache, scale_, OutputView{out_latent.data() + t0 * lora, lora, T * lora});
  }

  // Values: attn[t, h] = W_uv[h] · out_latent[h, t]  ([T, nh * v]), then o_proj.
  std::vector<float> attn(T * nh * vdim);
  ThreadPool::global().parallel_for(nh, [&](int64_t h0, int64_t h1) {
    std::vector<float> val(T * vdim);
    for (int64_t h = h0; h < h1; ++h) {
      WeightView w_uv = kv_b_proj_.view().row_slice(h * nope_v + nope, (h + 1) * nope_v);
      matmul(out_latent.data() + h * T * lora, T, w_uv, val.data());
      for (int64_t t = 0; t < T; ++t) {
        std::copy_n(val.data() + t * vdim, vdim, attn.data() + (t * nh + h) * vdim);
      }
    }
  });
  o_proj_.forward(attn.data(), T, out);
}

}  // namespace epserve
