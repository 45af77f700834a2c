// Qwen3VLMoeForConditionalGeneration: a Qwen3-MoE language model (stored under
// model.language_model., read here under the names qwen3_moe.cpp looks up) with interleaved
// MRoPE (GqaAttention, from rope.mrope_section) and DeepStack (CausalLM), plus the vision tower
// under model.visual. The published checkpoint fuses each layer's experts into
// mlp.experts.gate_up_proj [E, hidden, 2 * moe_inter] and mlp.experts.down_proj
// [E, moe_inter, hidden] (input dimension first); transformers 5 holds them as [E, 2 * inter,
// hidden] and [E, hidden, inter]. Both are read, the first as transposed copies of the experts
// this rank holds, the second as views.
#include <fmt/format.h>

#include "model/causal_lm.h"

namespace epserve {
namespace {

void map_fused_experts(const ModelConfig& c, ModelWeights& w, int layer) {
  const std::string stored = fmt::format("model.language_model.layers.{}.mlp.experts.", layer);
  const std::string name = fmt::format("model.layers.{}.mlp.experts.", layer);
  const int64_t E = c.moe.num_experts;
  const int64_t H = c.hidden_size;
  const int64_t I = c.moe.moe_intermediate_size;
  const Shape gate_up = w.raw(stored + "gate_up_proj").shape();
  const Shape down = w.raw(stored + "down_proj").shape();
  const bool published = gate_up == Shape{E, H, 2 * I} && down == Shape{E, I, H};
  const bool runtime = gate_up == Shape{E, 2 * I, H} && down == Shape{E, H, I};
  EPS_CHECK(published || runtime,
            "{}: '{}gate_up_proj' {} / 'down_proj' {}: expected [{}, {}, {}] / [{}, {}, {}] (as "
            "published) or [{}, {}, {}] / [{}, {}, {}]",
            w.file_of(stored + "gate_up_proj"), stored, shape_str(gate_up), shape_str(down), E, H,
            2 * I, E, I, H, E, 2 * I, H, E, H, I);
  for (int64_t e = 0; e < E; ++e) {
    const std::string p = fmt::format("{}{}.", name, e);
    w.add_slice(p + "gate_proj.weight", stored + "gate_up_proj", e, 0, I, published);
    w.add_slice(p + "up_proj.weight", stored + "gate_up_proj", e, I, 2 * I, published);
    w.add_slice(p + "down_proj.weight", stored + "down_proj", e, 0, H, published);
  }
}

}  // namespace

std::unique_ptr<CausalLM> build_qwen3_vl_moe(ModelConfig config, ModelWeights weights,
                                             const ModelLoadOptions& options) {
  const std::string lm = "model.language_model.";
  for (const std::string& stored : weights.names()) {
    if (stored.rfind(lm, 0) == 0) weights.add_alias("model." + stored.substr(lm.size()), stored);
  }
  for (int l = 0; l < config.num_layers; ++l) {
    if (config.layer_is_moe[l]) map_fused_experts(config, weights, l);
  }
  auto tower = std::make_unique<VisionTower>(VisionTower::load(config, weights, "model.visual"));
  std::unique_ptr<CausalLM> model = build_qwen3_moe(std::move(config), std::move(weights), options);
  model->set_vision(std::move(tower));
  return model;
}

}  // namespace epserve
