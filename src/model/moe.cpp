#include "model/moe.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/splitmix.h"
#include "core/thread_pool.h"
#include "ep/dispatcher.h"

namespace epserve {
namespace {

// Experts with at most this many tokens each go to threads whole (see forward_slots).
constexpr int64_t kMaxTokensPerThreadedExpert = 4;

}  // namespace

LocalExperts::LocalExperts(std::vector<GatedMlp> experts, int top_k, int first_id)
    : experts_(std::move(experts)), top_k_(top_k), first_id_(first_id) {}

int64_t LocalExperts::hidden_size() const {
  return experts_.empty() ? 0 : experts_[0].hidden_size();
}

void LocalExperts::run_expert(int local, const float* const* rows, int64_t n, float* out,
                              ExpertScratch& scratch) const {
  const int64_t H = hidden_size();
  scratch.packed_x.resize(n * H);  // [n, H]
  for (int64_t j = 0; j < n; ++j) std::copy_n(rows[j], H, scratch.packed_x.data() + j * H);
  experts_[local].forward(scratch.packed_x.data(), n, out, scratch.mlp);  // [n, H]
}

void LocalExperts::forward_slots(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                                 float* y, ExpertScratch& scratch) const {
  const int64_t H = hidden_size();
  const int64_t E = static_cast<int64_t>(experts_.size());
  // Group (token, slot) pairs by expert, in token order within each expert.
  scratch.pairs.resize(E);
  for (auto& list : scratch.pairs) list.clear();
  for (int64_t i = 0; i < num_tokens * top_k_; ++i) {
    int64_t e = static_cast<int64_t>(topk_ids[i]) - first_id_;
    if (e >= 0 && e < E) scratch.pairs[e].push_back(i);
  }
  // Expert e over its (token, slot) pairs: gathers their rows, runs the expert, writes each
  // output row to its slot of y. `work` holds the gathered rows and outputs.
  auto run_pairs = [&](int64_t e, ExpertScratch& work) {
    const auto& list = scratch.pairs[e];
    const int64_t n = static_cast<int64_t>(list.size());
    work.rows.resize(n);
    for (int64_t j = 0; j < n; ++j) work.rows[j] = x + (list[j] / top_k_) * H;
    work.packed_y.resize(n * H);
    run_expert(static_cast<int>(e), work.rows.data(), n, work.packed_y.data(), work);
    for (int64_t j = 0; j < n; ++j) std::copy_n(work.packed_y.data() + j * H, H, y + list[j] * H);
  };
  // Decode-sized work (many experts, few tokens each) on several threads: whole experts per
  // thread, each expert's matmuls inline on its thread (nested loops run inline), instead of every
  // small matmul split over all threads with a barrier after each. The rows each expert computes
  // are the same whichever thread runs it.
  ThreadPool& pool = ThreadPool::global();
  if (pool.num_threads() > 1) {
    scratch.active.clear();
    int64_t most = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (scratch.pairs[e].empty()) continue;
      scratch.active.push_back(e);
      most = std::max<int64_t>(most, static_cast<int64_t>(scratch.pairs[e].size()));
    }
    const int64_t count = static_cast<int64_t>(scratch.active.size());
    if (most <= kMaxTokensPerThreadedExpert && count >= 2 * pool.num_threads()) {
      pool.parallel_for(
          count,
          [&](int64_t a0, int64_t a1) {
            thread_local ExpertScratch local;
            for (int64_t a = a0; a < a1; ++a) run_pairs(scratch.active[a], local);
          },
          1, 4);
      return;
    }
  }
  for (int64_t e = 0; e < E; ++e) {
    if (!scratch.pairs[e].empty()) run_pairs(e, scratch);
  }
}

void LocalExperts::dispatch_wait_and_compute(MoeStageState& s) {
  s.y.resize(s.num_tokens * top_k_ * hidden_size());  // [T * K, H]
  forward_slots(s.x, s.num_tokens, s.topk_ids.data(), s.y.data(), s.scratch);
}

void LocalExperts::combine_wait(MoeStageState& s) {
  combine_reference(s.y.data(), s.topk_ids.data(), s.topk_weights.data(), s.num_tokens, top_k_,
                    hidden_size(), s.out);
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
  gate_ =
      Linear::load(weights, prefix + ".gate.weight", config.moe.num_experts, config.hidden_size);
  const float* bias = nullptr;
  if (config.moe.has_correction_bias) {
    correction_bias_ =
        weights.get_f32(prefix + ".gate.e_score_correction_bias", {config.moe.num_experts});
    bias = correction_bias_.f32();
  }
  routing_ = routing_params(config.moe, bias);
}

void MoeBlock::set_context(std::shared_ptr<MoeContext> moe, bool fake_routing) {
  moe_ = std::move(moe);
  fake_routing_ = fake_routing;
}

void MoeBlock::route(const float* x, int64_t num_tokens, std::vector<float>& logits,
                     int32_t* topk_ids, float* topk_weights, int64_t token_offset) const {
  const int64_t E = routing_.num_experts;
  logits.resize(num_tokens * E);  // [T, E]
  if (!fake_routing_) {
    gate_.forward_fp32(x, num_tokens, logits.data());
    route_topk(routing_, logits.data(), num_tokens, topk_ids, topk_weights);
    return;
  }
  // SGLang's fake dispatch: logits uniform in [5, 10) and no correction bias. The draw depends
  // only on (pass, layer, token, expert), so every rank of a group routes a token alike.
  const uint64_t pass_id = moe_ ? static_cast<uint64_t>(moe_->pass.pass_id) : 0;
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      uint64_t h = splitmix64(splitmix64(splitmix64(pass_id) ^ static_cast<uint64_t>(layer_)) ^
                              static_cast<uint64_t>((token_offset + t) * E + e));
      logits[t * E + e] = 5.0f + 5.0f * static_cast<float>(h >> 40) / static_cast<float>(1 << 24);
    }
  }
  RoutingParams unbiased = routing_;
  unbiased.correction_bias = nullptr;
  route_topk(unbiased, logits.data(), num_tokens, topk_ids, topk_weights);
}

void MoeBlock::forward(const float* x, int64_t num_tokens, float* out) {
  EPS_CHECK(moe_ != nullptr, "MoE layer {} has no MoE context", layer_);
  MoeStageState& s = moe_->pass.micro_batches[0];
  begin(s, x, num_tokens, out);
  route_stage(s);
  dispatch_start(s);
  dispatch_wait_and_compute(s);
  combine_start(s);
  combine_wait_and_shared(s);
}

void MoeBlock::begin(MoeStageState& s, const float* x, int64_t num_tokens, float* out,
                     int64_t token_offset) const {
  s.x = x;
  s.num_tokens = num_tokens;
  s.out = out;
  s.token_offset = token_offset;
}

void MoeBlock::route_stage(MoeStageState& s) {
  s.topk_ids.resize(s.num_tokens * top_k_);  // [T, K]
  s.topk_weights.resize(s.num_tokens * top_k_);
  route(s.x, s.num_tokens, s.router_logits, s.topk_ids.data(), s.topk_weights.data(),
        s.token_offset);
  if (observer_) {
    observer_->on_routing(layer_, s.num_tokens, top_k_, s.topk_ids.data(), s.topk_weights.data());
  }
  // Alone, logical ids are the physical ones; under expert parallelism the slots report.
  if (moe_ && moe_->pass.expert_sink && experts_->slots() == nullptr) {
    moe_->pass.expert_sink->on_topk(layer_, s.topk_ids.data(), 0, s.num_tokens, top_k_);
  }
}

void MoeBlock::combine_wait_and_shared(MoeStageState& s) {
  experts_->combine_wait(s);  // s.out [T, H]
  if (!shared_) return;
  shared_stage(s);
  const int64_t n = s.num_tokens * hidden_size_;
  for (int64_t i = 0; i < n; ++i) s.out[i] += s.shared_out[i];
}

void MoeBlock::shared_stage(MoeStageState& s) {
  if (!shared_) return;
  s.shared_out.resize(s.num_tokens * hidden_size_);  // [T, H]
  shared_->forward(s.x, s.num_tokens, s.shared_out.data(), s.scratch.mlp);
}

void MoeBlock::combine_wait_rows(MoeStageState& s) {
  experts_->combine_wait_rows(s);
}

void MoeBlock::combine_wait_and_add_shared(MoeStageState& s) {
  experts_->combine_wait(s);  // s.out [T, H]
  if (!shared_) return;
  const int64_t n = s.num_tokens * hidden_size_;
  for (int64_t i = 0; i < n; ++i) s.out[i] += s.shared_out[i];
}

}  // namespace epserve
