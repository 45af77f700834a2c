// DeepseekV3ForCausalLM (DeepSeek-V3/R1, Kimi-K2): MLA attention; the first
// first_k_dense_replace layers dense; then MoE with sigmoid group-limited routing and shared
// experts.
#include <fmt/format.h>

#include "model/attention_mla.h"
#include "model/causal_lm.h"
#include "model/moe_parallel.h"

namespace epserve {

std::unique_ptr<CausalLM> build_deepseek_v3(ModelConfig config, ModelWeights weights,
                                            const ModelLoadOptions& options) {
  const ModelParallel& parallel = options.parallel;
  KvLayout layout = MlaAttention::kv_layout(config);
  auto model = std::make_unique<CausalLM>(std::move(config), std::move(weights), layout, parallel,
                                          options.moe);
  const ModelConfig& c = model->config();
  const ModelWeights& w = model->weights();
  std::vector<DecoderLayer> layers;
  for (int l = 0; l < c.num_layers; ++l) {
    std::string prefix = fmt::format("model.layers.{}", l);
    DecoderLayer layer;
    layer.input_norm =
        RmsNorm::load(w, prefix + ".input_layernorm.weight", c.hidden_size, c.rms_norm_eps);
    layer.post_attention_norm = RmsNorm::load(w, prefix + ".post_attention_layernorm.weight",
                                              c.hidden_size, c.rms_norm_eps);
    layer.attention =
        std::make_unique<MlaAttention>(c, w, prefix + ".self_attn", parallel.attention_heads);
    std::string mlp = prefix + ".mlp";
    if (c.layer_is_moe[l]) {
      std::optional<GatedMlp> shared;
      if (c.moe.num_shared_experts > 0) {
        shared = GatedMlp::load(w, mlp + ".shared_experts", c.hidden_size,
                                c.moe.moe_intermediate_size * c.moe.num_shared_experts);
      }
      auto moe = std::make_unique<MoeBlock>(
          c, w, mlp, l, make_routed_experts(c, w, mlp, l, parallel, options.moe),
          std::move(shared));
      layer.moe = moe.get();
      layer.feed_forward = std::move(moe);
    } else {
      layer.feed_forward = std::make_unique<DenseFeedForward>(
          GatedMlp::load(w, mlp, c.hidden_size, c.intermediate_size, parallel.dense_mlp));
      layer.feed_forward_is_partial = parallel.dense_mlp.size > 1;
    }
    layers.push_back(std::move(layer));
    if (options.on_layer_loaded) options.on_layer_loaded(l + 1, c.num_layers);
  }
  model->set_layers(std::move(layers));
  model->load_embeddings_and_head();
  return model;
}

}  // namespace epserve
