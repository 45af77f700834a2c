// Qwen3MoeForCausalLM: GQA attention with per-head q/k RMSNorm; MoE layers with softmax top-k
// routing (renormalised when norm_topk_prob) and no shared expert; dense layers where
// mlp_only_layers or decoder_sparse_step say so.
#include <fmt/format.h>

#include "model/attention_gqa.h"
#include "model/causal_lm.h"
#include "model/moe_parallel.h"

namespace epserve {

std::unique_ptr<CausalLM> build_qwen3_moe(ModelConfig config, ModelWeights weights,
                                          const ModelLoadOptions& options) {
  const ModelParallel& parallel = options.parallel;
  KvLayout layout = GqaAttention::kv_layout(config, parallel.attention_heads.size);
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
        std::make_unique<GqaAttention>(c, w, prefix + ".self_attn", parallel.attention_heads);
    std::string mlp = prefix + ".mlp";
    if (c.layer_is_moe[l]) {
      auto moe = std::make_unique<MoeBlock>(
          c, w, mlp, l, make_routed_experts(c, w, mlp, l, parallel, options.moe), std::nullopt);
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
