#include "model/tensor_specs.h"

#include <fmt/format.h>

namespace epserve {
namespace {

void add_mlp(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t hidden,
             int64_t inter) {
  specs.push_back({prefix + ".gate_proj.weight", {inter, hidden}, TensorRole::kMatrix});
  specs.push_back({prefix + ".up_proj.weight", {inter, hidden}, TensorRole::kMatrix});
  specs.push_back({prefix + ".down_proj.weight", {hidden, inter}, TensorRole::kMatrix});
}

void add_mla(std::vector<TensorSpec>& specs, const std::string& p, const ModelConfig& c) {
  const MlaConfig& m = c.mla;
  const int64_t H = c.hidden_size;
  const int64_t heads = c.num_heads;
  if (m.q_lora_rank > 0) {
    specs.push_back({p + ".q_a_proj.weight", {m.q_lora_rank, H}, TensorRole::kMatrix});
    specs.push_back({p + ".q_a_layernorm.weight", {m.q_lora_rank}, TensorRole::kNorm});
    specs.push_back(
        {p + ".q_b_proj.weight", {heads * m.qk_head_dim(), m.q_lora_rank}, TensorRole::kMatrix});
  } else {
    specs.push_back({p + ".q_proj.weight", {heads * m.qk_head_dim(), H}, TensorRole::kMatrix});
  }
  specs.push_back({p + ".kv_a_proj_with_mqa.weight",
                   {m.kv_lora_rank + m.qk_rope_head_dim, H},
                   TensorRole::kMatrix});
  specs.push_back({p + ".kv_a_layernorm.weight", {m.kv_lora_rank}, TensorRole::kNorm});
  specs.push_back({p + ".kv_b_proj.weight",
                   {heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank},
                   TensorRole::kMatrix});
  specs.push_back({p + ".o_proj.weight", {H, heads * m.v_head_dim}, TensorRole::kMatrix});
}

void add_gqa(std::vector<TensorSpec>& specs, const std::string& p, const ModelConfig& c) {
  const int64_t H = c.hidden_size;
  const int64_t hd = c.head_dim;
  specs.push_back({p + ".q_proj.weight", {c.num_heads * hd, H}, TensorRole::kMatrix});
  specs.push_back({p + ".k_proj.weight", {c.num_kv_heads * hd, H}, TensorRole::kMatrix});
  specs.push_back({p + ".v_proj.weight", {c.num_kv_heads * hd, H}, TensorRole::kMatrix});
  specs.push_back({p + ".o_proj.weight", {H, c.num_heads * hd}, TensorRole::kMatrix});
  specs.push_back({p + ".q_norm.weight", {hd}, TensorRole::kNorm});
  specs.push_back({p + ".k_norm.weight", {hd}, TensorRole::kNorm});
}

}  // namespace

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  const int64_t H = c.hidden_size;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, TensorRole::kEmbedding});
  for (int l = 0; l < c.num_layers; ++l) {
    std::string p = fmt::format("model.layers.{}", l);
    specs.push_back({p + ".input_layernorm.weight", {H}, TensorRole::kNorm});
    specs.push_back({p + ".post_attention_layernorm.weight", {H}, TensorRole::kNorm});
    if (c.is_mla()) {
      add_mla(specs, p + ".self_attn", c);
    } else {
      add_gqa(specs, p + ".self_attn", c);
    }
    std::string mlp = p + ".mlp";
    if (!c.layer_is_moe[l]) {
      add_mlp(specs, mlp, H, c.intermediate_size);
      continue;
    }
    specs.push_back({mlp + ".gate.weight", {c.moe.num_experts, H}, TensorRole::kMatrix});
    if (c.moe.has_correction_bias) {
      specs.push_back(
          {mlp + ".gate.e_score_correction_bias", {c.moe.num_experts}, TensorRole::kRouterBias});
    }
    for (int e = 0; e < c.moe.num_experts; ++e) {
      add_mlp(specs, fmt::format("{}.experts.{}", mlp, e), H, c.moe.moe_intermediate_size);
    }
    if (c.moe.num_shared_experts > 0) {
      add_mlp(specs, mlp + ".shared_experts", H,
              static_cast<int64_t>(c.moe.moe_intermediate_size) * c.moe.num_shared_experts);
    }
  }
  specs.push_back({"model.norm.weight", {H}, TensorRole::kNorm});
  if (!c.tie_word_embeddings) {
    specs.push_back({"lm_head.weight", {c.vocab_size, H}, TensorRole::kMatrix});
  }
  return specs;
}

}  // namespace epserve
