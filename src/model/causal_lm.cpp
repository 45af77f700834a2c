#include "model/causal_lm.h"

#include <algorithm>

#include <fmt/format.h>

#include "comm/communicator.h"
#include "core/phase_timer.h"
#include "ep/expert_location.h"
#include "io/model_weights.h"
#include "model/moe_parallel.h"
#include "model/tbo_split.h"

namespace epserve {

CausalLM::CausalLM(ModelConfig config, ModelWeights weights, KvLayout kv_layout,
                   ModelParallel parallel, std::shared_ptr<MoeContext> moe)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      kv_layout_(kv_layout),
      parallel_(std::move(parallel)),
      moe_(moe ? std::move(moe) : std::make_shared<MoeContext>()) {}

void CausalLM::reduce_over_heads(float* data, int64_t count, const char* what, size_t layer) {
  Communicator* group = parallel_.attention_group.get();
  if (group == nullptr || group->size() == 1) return;
  group->set_context(fmt::format("layer {} {} all-reduce", layer, what));
  PhaseTimer timer("comm");
  group->allreduce(data, static_cast<size_t>(count), ReduceOp::kSum);
}

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
  Communicator* group = parallel_.attention_group.get();
  if (parallel_.vocab_parallel_lm_head && group != nullptr && group->size() > 1) {
    auto [v0, v1] = vocab_share(group->rank(), group->size());
    lm_head_ = lm_head_.rows(v0, v1);
  }
}

std::pair<int64_t, int64_t> CausalLM::vocab_share(int rank, int size) const {
  const int64_t V = config_.vocab_size;
  return {V * rank / size, V * (rank + 1) / size};
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

void CausalLM::add_image_embeds(const ForwardBatch& batch, int64_t part, float* hidden) const {
  const int64_t H = config_.hidden_size;
  const int64_t W = batch.image_embed_width;
  EPS_CHECK(vision_ != nullptr, "a batch with image tokens for a model without a vision tower");
  EPS_CHECK(W == vision_->embed_width() &&
                static_cast<int64_t>(batch.image_embeds.size()) == batch.num_image_rows() * W,
            "image embeddings of width {} ({} floats for {} rows), the vision tower gives {}", W,
            batch.image_embeds.size(), batch.num_image_rows(), vision_->embed_width());
  for (int64_t j = 0; j < batch.num_image_rows(); ++j) {
    const int64_t row = batch.image_rows[j];
    EPS_CHECK(row >= 0 && row < batch.num_tokens(), "image row {} outside the batch", row);
    const float* src = batch.image_embeds.data() + j * W + part * H;
    float* dst = hidden + row * H;
    if (part == 0) {
      std::copy_n(src, H, dst);
    } else {
      for (int64_t i = 0; i < H; ++i) dst[i] += src[i];
    }
  }
}

int64_t CausalLM::num_deepstack() const {
  return vision_ ? vision_->embed_width() / config_.hidden_size - 1 : 0;
}

void CausalLM::encode_image(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                            float* out) const {
  EPS_CHECK(vision_ != nullptr, "{} has no vision tower", config_.architecture);
  vision_->forward(grid_t, grid_h, grid_w, pixels, out);
}

ExpertSlots* CausalLM::expert_slots(int layer) {
  MoeBlock* moe = layers_.at(layer).moe;
  return moe ? moe->routed_experts().slots() : nullptr;
}

void CausalLM::forward(const ForwardBatch& batch, KvCache& cache, float* logits) {
  ++moe_->pass.pass_id;
  if (pass_observer_) pass_observer_->on_pass_begin(batch);
  forward_pass(batch, cache, logits);
  if (pass_observer_) pass_observer_->on_pass_end();
}

void CausalLM::forward_pass(const ForwardBatch& batch, KvCache& cache, float* logits) {
  const int64_t T = batch.num_tokens();
  const int64_t H = config_.hidden_size;
  std::vector<float> hidden(T * H), normed(T * H), delta(T * H);  // [T, H] each
  PassState& pass = moe_->pass;
  pass.mode_agreed = false;
  pass.has_prefill = batch_is_extend(batch);
  pass.num_tokens = T;
  embed(batch, hidden.data());
  const bool images = batch.num_image_rows() > 0;
  if (images) add_image_embeds(batch, 0, hidden.data());
  bool extend = false;
  const bool overlapped = agree_two_batch_overlap(batch, extend);
  if (overlapped || op_observer_) {
    if (!overlapped) extend = pass.has_prefill;
    forward_layers_staged(batch, cache, extend, overlapped, hidden.data(), normed.data(),
                          delta.data());
  } else {
    for (size_t l = 0; l < layers_.size(); ++l) {
      attention_block(l, batch, cache, hidden.data(), normed.data(), delta.data());
      feed_forward_block(l, T, normed.data(), delta.data(), hidden.data());
      if (images && static_cast<int64_t>(l) < num_deepstack()) {
        add_image_embeds(batch, static_cast<int64_t>(l) + 1, hidden.data());
      }
    }
  }
  // Final norm and LM head only for the rows whose logits are wanted.
  std::vector<float> rows;  // [R, H]
  for (const SequenceInput& s : batch.seqs) {
    if (s.logits == LogitsWanted::kNone) continue;
    int64_t first =
        s.logits == LogitsWanted::kAll ? s.token_offset : s.token_offset + s.num_new - 1;
    int64_t last = s.token_offset + s.num_new;
    rows.insert(rows.end(), hidden.begin() + first * H, hidden.begin() + last * H);
  }
  const int64_t R = static_cast<int64_t>(rows.size()) / H;
  if (R == 0) return;
  final_norm_.forward(rows.data(), R, rows.data());
  if (lm_head_.out_features() == config_.vocab_size) {
    lm_head_.forward(rows.data(), R, logits);  // [R, V]
    return;
  }
  // Vocabulary split over the attention group: each rank computes its columns, then they are
  // gathered and put side by side (every logit is computed whole by one rank: exact).
  Communicator& group = *parallel_.attention_group;
  const int G = group.size();
  std::vector<float> local(R * lm_head_.out_features());  // [R, V / G]
  lm_head_.forward(rows.data(), R, local.data());
  std::vector<size_t> bytes(G);
  for (int r = 0; r < G; ++r) {
    auto [v0, v1] = vocab_share(r, G);
    bytes[r] = static_cast<size_t>(R * (v1 - v0)) * sizeof(float);
  }
  std::vector<float> gathered(R * config_.vocab_size);  // [G][R, V_r]
  {
    PhaseTimer timer("comm");
    group.set_context("lm head gather");
    group.allgatherv(local.data(), local.size() * sizeof(float), gathered.data(), bytes);
  }
  const int64_t V = config_.vocab_size;
  int64_t offset = 0;
  for (int r = 0; r < G; ++r) {
    auto [v0, v1] = vocab_share(r, G);
    for (int64_t i = 0; i < R; ++i) {
      std::copy_n(gathered.data() + offset + i * (v1 - v0), v1 - v0, logits + i * V + v0);
    }
    offset += R * (v1 - v0);
  }
}

void CausalLM::attention_block(size_t l, const ForwardBatch& batch, KvCache& cache, float* hidden,
                               float* normed, float* delta) {
  const int64_t T = batch.num_tokens();
  const int64_t H = config_.hidden_size;
  DecoderLayer& layer = layers_[l];
  layer.input_norm.forward(hidden, T, normed);
  layer.attention->forward(normed, batch, cache, static_cast<int64_t>(l), delta);
  reduce_over_heads(delta, T * H, "attention", l);
  for (int64_t i = 0; i < T * H; ++i) hidden[i] += delta[i];
  layer.post_attention_norm.forward(hidden, T, normed);
}

void CausalLM::feed_forward_block(size_t l, int64_t T, const float* normed, float* delta,
                                  float* hidden) {
  const int64_t H = config_.hidden_size;
  DecoderLayer& layer = layers_[l];
  layer.feed_forward->forward(normed, T, delta);
  if (layer.feed_forward_is_partial) reduce_over_heads(delta, T * H, "mlp", l);
  for (int64_t i = 0; i < T * H; ++i) hidden[i] += delta[i];
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir,
                                         const ModelLoadOptions& requested) {
  ModelConfig config = load_model_config(model_dir);
  ModelWeights weights = ModelWeights::open(model_dir);
  ModelLoadOptions options = requested;
  if (!options.moe) options.moe = std::make_shared<MoeContext>();
  const ModelParallel& parallel = options.parallel;
  if (parallel.world && parallel.world->size() > 1 && config.moe.num_experts > 0) {
    EPS_CHECK(options.moe->location() != nullptr,
              "expert parallelism needs the expert placement in the MoE context");
    const auto& location = *options.moe->location();
    EPS_CHECK(location.num_logical() == config.moe.num_experts &&
                  location.num_layers() == config.num_layers &&
                  location.ep_size() == parallel.ep_size,
              "the expert location map ({} layers, {} experts, ep {}) does not fit the model ({} "
              "layers, {} experts) and --ep-size {}",
              location.num_layers(), location.num_logical(), location.ep_size(), config.num_layers,
              config.moe.num_experts, parallel.ep_size);
    EPS_CHECK(parallel.moe_a2a_backend != MoeA2aBackend::kDeepep ||
                  (options.moe->normal_dispatcher && options.moe->low_latency_dispatcher),
              "--moe-a2a-backend deepep needs the dispatchers in the MoE context");
  }
  std::unique_ptr<CausalLM> model;
  switch (config.arch) {
    case Arch::kDeepseekV3:
      model = build_deepseek_v3(std::move(config), std::move(weights), options);
      break;
    case Arch::kQwen3Moe:
      model = build_qwen3_moe(std::move(config), std::move(weights), options);
      break;
    case Arch::kQwen3VlMoe:
      model = build_qwen3_vl_moe(std::move(config), std::move(weights), options);
      break;
  }
  EPS_CHECK(model != nullptr, "unsupported architecture");
  const bool fake = parallel.ep_dispatch_algorithm == EpDispatchAlgorithm::kFake;
  for (auto& layer : model->layers()) {
    if (layer.moe) layer.moe->set_context(model->moe_context_ptr(), fake);
  }
  return model;
}

}  // namespace epserve
