#include "model/attention_gqa.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/attention.h"

namespace epserve {
namespace {

// The kv heads [begin, end) rank `heads.rank` needs.
std::pair<int64_t, int64_t> local_kv_heads(const ModelConfig& config, Shard heads) {
  int64_t kv = config.num_kv_heads;
  if (kv >= heads.size) {
    EPS_CHECK(kv % heads.size == 0, "{} kv heads do not split over {} tensor-parallel ranks", kv,
              heads.size);
    return {heads.begin(kv), heads.end(kv)};
  }
  EPS_CHECK(heads.size % kv == 0, "{} tensor-parallel ranks are not a multiple of {} kv heads",
            heads.size, kv);
  int64_t index = heads.rank / (heads.size / kv);
  return {index, index + 1};
}

}  // namespace

GqaAttention::GqaAttention(const ModelConfig& config, const ModelWeights& weights,
                           const std::string& prefix, Shard heads)
    : head_dim_(config.head_dim) {
  EPS_CHECK(config.num_heads % heads.size == 0,
            "{} attention heads do not split over {} tensor-parallel ranks", config.num_heads,
            heads.size);
  const int64_t H = config.hidden_size;
  const int64_t hd = head_dim_;
  num_local_heads_ = heads.length(config.num_heads);
  auto [kv0, kv1] = local_kv_heads(config, heads);
  num_local_kv_heads_ = kv1 - kv0;
  int64_t h0 = heads.begin(config.num_heads);
  int64_t h1 = heads.end(config.num_heads);
  q_proj_ = Linear::load(weights, prefix + ".q_proj.weight", config.num_heads * hd, H)
                .rows(h0 * hd, h1 * hd);
  k_proj_ = Linear::load(weights, prefix + ".k_proj.weight", config.num_kv_heads * hd, H)
                .rows(kv0 * hd, kv1 * hd);
  v_proj_ = Linear::load(weights, prefix + ".v_proj.weight", config.num_kv_heads * hd, H)
                .rows(kv0 * hd, kv1 * hd);
  o_proj_ = Linear::load(weights, prefix + ".o_proj.weight", H, config.num_heads * hd)
                .cols(h0 * hd, h1 * hd);
  q_norm_ = RmsNorm::load(weights, prefix + ".q_norm.weight", hd, config.rms_norm_eps);
  k_norm_ = RmsNorm::load(weights, prefix + ".k_norm.weight", hd, config.rms_norm_eps);
  rope_ = make_rope_table(rope_params(config.rope), static_cast<int>(hd));
  mrope_section_ = config.rope.mrope_section;
  EPS_CHECK(mrope_section_.empty() || config.rope.mrope_interleaved,
            "only interleaved MRoPE (Qwen3-VL) is supported");
  scale_ = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
}

KvLayout GqaAttention::kv_layout(const ModelConfig& config, int tp_size) {
  int64_t kv_heads = config.num_kv_heads >= tp_size ? config.num_kv_heads / tp_size : 1;
  return KvLayout{kv_heads * config.head_dim, kv_heads * config.head_dim};
}

void GqaAttention::forward(const float* x, const ForwardBatch& batch, KvCache& cache, int64_t layer,
                           float* out) const {
  const int64_t T = batch.num_tokens();
  const int64_t hd = head_dim_;
  const int64_t nh = num_local_heads_;
  const int64_t nkv = num_local_kv_heads_;
  std::vector<float> q(T * nh * hd), k(T * nkv * hd), v(T * nkv * hd);
  q_proj_.forward(x, T, q.data());  // [T, nh, hd]
  k_proj_.forward(x, T, k.data());  // [T, nkv, hd]
  v_proj_.forward(x, T, v.data());  // [T, nkv, hd]
  q_norm_.forward(q.data(), T * nh, q.data());
  k_norm_.forward(k.data(), T * nkv, k.data());

  float* k_cache = cache.k(layer);
  float* v_cache = cache.v(layer);
  const int64_t kv_row = nkv * hd;
  const bool mrope = !mrope_section_.empty() && !batch.mrope_positions.empty();
  std::vector<float> angle(hd / 2);
  for (const SequenceInput& s : batch.seqs) {
    for (int64_t i = 0; i < s.num_new; ++i) {
      int64_t t = s.token_offset + i;
      if (mrope) {
        const int half = static_cast<int>(hd / 2);
        mrope_interleaved_angles(rope_, batch.mrope_positions.data() + 3 * t, mrope_section_.data(),
                                 angle.data());
        apply_rope_angles(angle.data(), half, q.data() + t * nh * hd, nh, hd);
        apply_rope_angles(angle.data(), half, k.data() + t * kv_row, nkv, hd);
      } else {
        apply_rope(rope_, batch.positions[t], q.data() + t * nh * hd, nh, hd);
        apply_rope(rope_, batch.positions[t], k.data() + t * kv_row, nkv, hd);
      }
      int64_t slot = s.slots[s.num_past + i];
      std::copy_n(k.data() + t * kv_row, kv_row, k_cache + slot * kv_row);
      std::copy_n(v.data() + t * kv_row, kv_row, v_cache + slot * kv_row);
    }
  }
  std::vector<float> attn(T * nh * hd);  // [T, nh, hd]
  for (const SequenceInput& s : batch.seqs) {
    SeqSlots seq{s.slots.data(), s.num_past, s.num_new};
    int64_t off = s.token_offset * nh * hd;
    attention_gqa(q.data() + off, seq, nh, nkv, hd, k_cache, v_cache, kv_row, scale_,
                  attn.data() + off);
  }
  o_proj_.forward(attn.data(), T, out);
}

}  // namespace epserve
