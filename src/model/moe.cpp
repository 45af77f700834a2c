#include "model/moe.h"

#include <fmt/format.h>

#include <algorithm>

#include "ep/dispatcher.h"

namespace epserve {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

LocalExperts::LocalExperts(std::vector<GatedMlp> experts, int top_k, int first_id)
    : experts_(std::move(experts)), top_k_(top_k), first_id_(first_id) {}

int64_t LocalExperts::hidden_size() const {
  return experts_.empty() ? 0 : experts_[0].hidden_size();
}

void LocalExperts::run_expert(int local, const float* const* rows, int64_t n, float* out) const {
  const int64_t H = hidden_size();
  std::vector<float> xs(n * H);  // [n, H]
  for (int64_t j = 0; j < n; ++j) std::copy_n(rows[j], H, xs.data() + j * H);
  experts_[local].forward(xs.data(), n, out);  // [n, H]
}

void LocalExperts::forward_slots(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                                 float* y) const {
  const int64_t H = hidden_size();
  const int64_t E = static_cast<int64_t>(experts_.size());
  // Group (token, slot) pairs by expert, in token order within each expert.
  std::vector<std::vector<int64_t>> pairs(E);
  for (int64_t i = 0; i < num_tokens * top_k_; ++i) {
    int64_t e = static_cast<int64_t>(topk_ids[i]) - first_id_;
    if (e >= 0 && e < E) pairs[e].push_back(i);
  }
  std::vector<const float*> rows;
  std::vector<float> ys;
  for (int64_t e = 0; e < E; ++e) {
    const auto& list = pairs[e];
    if (list.empty()) continue;
    const int64_t n = static_cast<int64_t>(list.size());
    rows.resize(n);
    for (int64_t j = 0; j < n; ++j) rows[j] = x + (list[j] / top_k_) * H;
    ys.resize(n * H);
    run_expert(static_cast<int>(e), rows.data(), n, ys.data());
    for (int64_t j = 0; j < n; ++j) std::copy_n(ys.data() + j * H, H, y + list[j] * H);
  }
}

void LocalExperts::forward(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                           const float* topk_weights, float* out) {
  const int64_t H = hidden_size();
  std::vector<float> y(num_tokens * top_k_ * H);  // [T * K, H]
  forward_slots(x, num_tokens, topk_ids, y.data());
  combine_reference(y.data(), topk_ids, topk_weights, num_tokens, top_k_, H, out);
}

std::vector<GatedMlp> load_experts(const ModelWeights& weights, const std::string& prefix,
                                   const ModelConfig& config, int first, int count) {
  std::vector<GatedMlp> experts;
  experts.reserve(count);
  for (int e = first; e < first + count; ++e) {
    experts.push_back(GatedMlp::load(weights, fmt::format("{}.experts.{}", prefix, e),
                                     config.hidden_size, config.moe.moe_intermediate_size));
  }
  return experts;
}

MoeBlock::MoeBlock(const ModelConfig& config, const ModelWeights& weights,
                   const std::string& prefix, int layer, std::unique_ptr<RoutedExperts> experts,
                   std::optional<GatedMlp> shared_experts)
    : layer_(layer),
      hidden_size_(config.hidden_size),
      top_k_(config.moe.top_k),
      experts_(std::move(experts)),
      shared_(std::move(shared_experts)) {
  gate_ = Linear::load(weights, prefix + ".gate.weight", config.moe.num_experts,
                       config.hidden_size);
  const float* bias = nullptr;
  if (config.moe.has_correction_bias) {
    correction_bias_ =
        weights.get_f32(prefix + ".gate.e_score_correction_bias", {config.moe.num_experts});
    bias = correction_bias_.f32();
  }
  routing_ = routing_params(config.moe, bias);
}

void MoeBlock::set_pass_state(std::shared_ptr<PassState> pass, bool fake_routing) {
  pass_ = std::move(pass);
  fake_routing_ = fake_routing;
}

void MoeBlock::route(const float* x, int64_t num_tokens, int32_t* topk_ids,
                     float* topk_weights) const {
  const int64_t E = routing_.num_experts;
  std::vector<float> logits(num_tokens * E);  // [T, E]
  if (!fake_routing_) {
    gate_.forward(x, num_tokens, logits.data());
    route_topk(routing_, logits.data(), num_tokens, topk_ids, topk_weights);
    return;
  }
  // SGLang's fake dispatch: logits uniform in [5, 10) and no correction bias. The draw depends
  // only on (pass, layer, token, expert), so every rank of a group routes a token alike.
  const uint64_t pass_id = pass_ ? static_cast<uint64_t>(pass_->pass_id) : 0;
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      uint64_t h = splitmix64(splitmix64(splitmix64(pass_id) ^ static_cast<uint64_t>(layer_)) ^
                              static_cast<uint64_t>(t * E + e));
      logits[t * E + e] = 5.0f + 5.0f * static_cast<float>(h >> 40) / static_cast<float>(1 << 24);
    }
  }
  RoutingParams unbiased = routing_;
  unbiased.correction_bias = nullptr;
  route_topk(unbiased, logits.data(), num_tokens, topk_ids, topk_weights);
}

void MoeBlock::forward(const float* x, int64_t num_tokens, float* out) {
  std::vector<int32_t> topk_ids(num_tokens * top_k_);  // [T, K]
  std::vector<float> topk_weights(num_tokens * top_k_);
  route(x, num_tokens, topk_ids.data(), topk_weights.data());
  if (observer_) {
    observer_->on_routing(layer_, num_tokens, top_k_, topk_ids.data(), topk_weights.data());
  }
  // Alone, logical ids are the physical ones; under expert parallelism the slots report.
  if (pass_ && pass_->expert_sink && experts_->slots() == nullptr) {
    pass_->expert_sink->on_topk(layer_, topk_ids.data(), 0, num_tokens, top_k_);
  }
  experts_->forward(x, num_tokens, topk_ids.data(), topk_weights.data(), out);  // [T, H]
  if (shared_) {
    std::vector<float> shared_out(num_tokens * hidden_size_);  // [T, H]
    shared_->forward(x, num_tokens, shared_out.data());
    for (int64_t i = 0; i < num_tokens * hidden_size_; ++i) out[i] += shared_out[i];
  }
}

}  // namespace epserve
