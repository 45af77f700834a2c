#include "model/causal_lm.h"

#include <algorithm>

#include "io/model_weights.h"

namespace epserve {

CausalLM::CausalLM(ModelConfig config, ModelWeights weights, KvLayout kv_layout)
    : config_(std::move(config)), weights_(std::move(weights)), kv_layout_(kv_layout) {}

void CausalLM::load_embeddings_and_head() {
  const int64_t V = config_.vocab_size;
  const int64_t H = config_.hidden_size;
  embed_tokens_ = weights_.get("model.embed_tokens.weight", {V, H});
  final_norm_ = RmsNorm::load(weights_, "model.norm.weight", H, config_.rms_norm_eps);
  if (config_.tie_word_embeddings && !weights_.has("lm_head.weight")) {
    lm_head_ = Linear::load(weights_, "model.embed_tokens.weight", V, H);
  } else {
    lm_head_ = Linear::load(weights_, "lm_head.weight", V, H);
  }
}

void CausalLM::set_moe_observer(MoeObserver* observer) {
  for (auto& layer : layers_) {
    if (layer.moe) layer.moe->set_observer(observer);
  }
}

void CausalLM::embed(const ForwardBatch& batch, float* hidden) const {
  const int64_t H = config_.hidden_size;
  for (int64_t t = 0; t < batch.num_tokens(); ++t) {
    int32_t id = batch.token_ids[t];
    EPS_CHECK(id >= 0 && id < config_.vocab_size, "token id {} is outside the vocabulary (0..{})",
              id, config_.vocab_size - 1);
    convert_to_f32(embed_tokens_.slice_rows(id, id + 1), hidden + t * H);
  }
}

void CausalLM::forward(const ForwardBatch& batch, KvCache& cache, float* logits) {
  const int64_t T = batch.num_tokens();
  const int64_t H = config_.hidden_size;
  std::vector<float> hidden(T * H), normed(T * H), delta(T * H);  // [T, H] each
  embed(batch, hidden.data());
  for (size_t l = 0; l < layers_.size(); ++l) {
    DecoderLayer& layer = layers_[l];
    layer.input_norm.forward(hidden.data(), T, normed.data());
    layer.attention->forward(normed.data(), batch, cache, static_cast<int64_t>(l), delta.data());
    for (int64_t i = 0; i < T * H; ++i) hidden[i] += delta[i];
    layer.post_attention_norm.forward(hidden.data(), T, normed.data());
    layer.feed_forward->forward(normed.data(), T, delta.data());
    for (int64_t i = 0; i < T * H; ++i) hidden[i] += delta[i];
  }
  // Final norm and LM head only for the rows whose logits are wanted.
  std::vector<float> rows;  // [R, H]
  for (const SequenceInput& s : batch.seqs) {
    if (s.logits == LogitsWanted::kNone) continue;
    int64_t first = s.logits == LogitsWanted::kAll ? s.token_offset
                                                   : s.token_offset + s.num_new - 1;
    int64_t last = s.token_offset + s.num_new;
    rows.insert(rows.end(), hidden.begin() + first * H, hidden.begin() + last * H);
  }
  const int64_t R = static_cast<int64_t>(rows.size()) / H;
  if (R == 0) return;
  final_norm_.forward(rows.data(), R, rows.data());
  lm_head_.forward(rows.data(), R, logits);  // [R, V]
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir,
                                         const ModelParallel& parallel) {
  ModelConfig config = load_model_config(model_dir);
  ModelWeights weights = ModelWeights::open(model_dir);
  switch (config.arch) {
    case Arch::kDeepseekV3:
      return build_deepseek_v3(std::move(config), std::move(weights), parallel);
    case Arch::kQwen3Moe:
      return build_qwen3_moe(std::move(config), std::move(weights), parallel);
  }
  EPS_THROW("unsupported architecture");
}

}  // namespace epserve
