#include "model/moe_parallel.h"

#include <fmt/format.h>

#include <algorithm>

#include "comm/communicator.h"
#include "core/phase_timer.h"
#include "ep/dispatcher.h"
#include "ep/expert_location.h"

namespace epserve {
namespace {

// The rank's share [begin, end) of num_tokens tokens split evenly over `size` ranks.
std::pair<int64_t, int64_t> token_share(int64_t num_tokens, int rank, int size) {
  return {num_tokens * rank / size, num_tokens * (rank + 1) / size};
}

}  // namespace

ExpertSlots::ExpertSlots(const ModelConfig& config, const ModelWeights& weights,
                         const std::string& prefix, int layer, const ModelParallel& parallel,
                         std::shared_ptr<MoeContext> moe)
    : layer_(layer),
      moe_tp_size_(parallel.moe_tp_size),
      algorithm_(parallel.ep_dispatch_algorithm),
      moe_(std::move(moe)) {
  EPS_CHECK(moe_ != nullptr && moe_->location() != nullptr,
            "layer {}: expert slots need the placement in the MoE context", layer);
  const ep::ExpertLocation& location = *moe_->location();
  num_physical_ = location.num_physical();
  const int per_rank = location.num_local_physical();
  first_slot_ = parallel.ep_rank * per_rank;
  std::vector<GatedMlp> mlps;
  for (int p = first_slot_; p < first_slot_ + per_rank; ++p) {
    int logical = location.physical_to_logical(layer, p);
    mlps.push_back(GatedMlp::load(weights, fmt::format("{}.experts.{}", prefix, logical),
                                  config.hidden_size, config.moe.moe_intermediate_size));
  }
  experts_ = std::make_unique<LocalExperts>(std::move(mlps), config.moe.top_k, first_slot_);
  build_tables();
}

void ExpertSlots::build_tables() {
  tables_.clear();
  if (algorithm_ != EpDispatchAlgorithm::kStatic) return;
  const ep::ExpertLocation& location = *moe_->location();
  for (int r = 0; r < location.ep_size(); ++r) {
    tables_.push_back(ep::static_dispatch_row(location, layer_, r));
  }
}

void ExpertSlots::to_physical(const int32_t* logical, int64_t count, int owner,
                              int32_t* physical) const {
  if (algorithm_ == EpDispatchAlgorithm::kStatic) {
    const std::vector<int32_t>& table = tables_[owner / moe_tp_size_];
    for (int64_t i = 0; i < count; ++i) physical[i] = logical[i] < 0 ? -1 : table[logical[i]];
    return;
  }
  // The draw depends on (pass, layer, sending rank, entry): every rank that maps the owner's
  // tokens (the all-reduce backend maps all of them) makes the same choice.
  const uint64_t seed = (static_cast<uint64_t>(moe_->pass.pass_id) << 24) ^
                        (static_cast<uint64_t>(layer_) << 12) ^ static_cast<uint64_t>(owner);
  for (int64_t begin = 0; begin < count;) {
    int64_t end = begin;
    while (end < count && logical[end] >= 0) ++end;
    ep::logical_to_physical_dynamic(*moe_->location(), layer_,
                                    seed ^ (static_cast<uint64_t>(begin) << 40),
                                    {logical + begin, static_cast<size_t>(end - begin)},
                                    {physical + begin, static_cast<size_t>(end - begin)});
    if (end < count) physical[end] = -1;
    begin = end + 1;
  }
}

void ExpertSlots::commit(std::vector<std::pair<int, GatedMlp>> replacements) {
  EPS_CHECK(moe_->location()->num_physical() == num_physical_,
            "layer {}: the new placement has {} slots, this one {}", layer_,
            moe_->location()->num_physical(), num_physical_);
  for (auto& [local, mlp] : replacements) {
    EPS_CHECK(local >= 0 && local < experts_->num_experts(), "layer {}: no local slot {}", layer_,
              local);
    experts_->set_expert(local, std::move(mlp));
  }
  build_tables();
}

AllReduceExperts::AllReduceExperts(const ModelConfig& config, const ModelWeights& weights,
                                   const std::string& prefix, int layer,
                                   const ModelParallel& parallel, std::shared_ptr<MoeContext> moe)
    : slots_(config, weights, prefix, layer, parallel, std::move(moe)),
      top_k_(config.moe.top_k),
      hidden_(config.hidden_size),
      world_(parallel.world),
      group_(parallel.attention_group),
      moe_tp_size_(parallel.moe_tp_size),
      moe_tp_rank_(parallel.moe_tp_rank) {}

void AllReduceExperts::dispatch_start(MoeStageState& s) {
  const int64_t K = top_k_;
  const int64_t H = hidden_;
  const int ranks = world_->size();
  // The batch every rank works on: with one attention group, its own (every rank has every
  // token); with DP attention, the tokens of all groups, gathered (each rank contributes its
  // share of its group's tokens, so every token comes once).
  s.experts_x = s.x;
  s.experts_topk_ids = s.topk_ids.data();
  s.experts_topk_weights = s.topk_weights.data();
  s.experts_num_tokens = s.num_tokens;
  s.group_offset = 0;
  s.tokens_per_rank.assign(ranks, 0);
  std::vector<int64_t>& counts = s.tokens_per_rank;
  const bool dp = group_->size() < ranks;
  if (dp) {
    auto [s0, s1] = token_share(s.num_tokens, group_->rank(), group_->size());
    int64_t mine = s1 - s0;
    {
      PhaseTimer timer("comm");
      world_->set_context("moe gather of the groups' tokens");
      world_->allgather(&mine, sizeof(mine), counts.data());
      int64_t total = 0;
      for (int r = 0; r < ranks; ++r) total += counts[r];
      auto gather = [&](const void* send, size_t row_bytes, void* recv) {
        std::vector<size_t> bytes(ranks);
        for (int r = 0; r < ranks; ++r) bytes[r] = static_cast<size_t>(counts[r]) * row_bytes;
        world_->allgatherv(send, static_cast<size_t>(mine) * row_bytes, recv, bytes);
      };
      s.gathered_x.resize(total * H);
      s.gathered_topk_ids.resize(total * K);
      s.gathered_topk_weights.resize(total * K);
      gather(s.x + s0 * H, H * sizeof(float), s.gathered_x.data());
      gather(s.topk_ids.data() + s0 * K, K * sizeof(int32_t), s.gathered_topk_ids.data());
      gather(s.topk_weights.data() + s0 * K, K * sizeof(float), s.gathered_topk_weights.data());
      s.experts_num_tokens = total;
    }
    // This group's tokens start where its first rank's share does.
    const int first_rank = world_->rank() - group_->rank();
    for (int r = 0; r < first_rank; ++r) s.group_offset += counts[r];
    s.experts_x = s.gathered_x.data();
    s.experts_topk_ids = s.gathered_topk_ids.data();
    s.experts_topk_weights = s.gathered_topk_weights.data();
  } else {
    for (int r = 0; r < ranks; ++r) {
      auto [t0, t1] = token_share(s.num_tokens, r, ranks);
      counts[r] = t1 - t0;
    }
  }
  // Every rank maps every token the way the token's owner (the rank that contributed it)
  // would, so all ranks agree on which slot serves each (token, k).
  s.physical_ids.resize(s.experts_num_tokens * K);  // [total, K]
  int64_t t0 = 0;
  for (int r = 0; r < ranks; ++r) {
    slots_.to_physical(s.experts_topk_ids + t0 * K, counts[r] * K, r,
                       s.physical_ids.data() + t0 * K);
    t0 += counts[r];
  }
  if (ExpertCountSink* sink = slots_.sink()) {
    // Count only the tokens this rank contributed (every rank maps all of them).
    const int me = world_->rank();
    int64_t offset = 0;
    for (int r = 0; r < me; ++r) offset += counts[r];
    const int group_rank = dp ? group_->rank() : me;
    const int group_size = dp ? group_->size() : ranks;
    sink->on_topk(slots_.layer(), s.physical_ids.data() + offset * K,
                  token_share(s.num_tokens, group_rank, group_size).first, counts[me], top_k_);
  }
}

void AllReduceExperts::dispatch_wait_and_compute(MoeStageState& s) {
  // Ranks holding the same slots take every moe_tp_size-th (token, k) row each.
  const int32_t* own = s.physical_ids.data();
  if (moe_tp_size_ > 1) {
    s.own_ids = s.physical_ids;
    for (size_t i = 0; i < s.own_ids.size(); ++i) {
      if (static_cast<int>(i % moe_tp_size_) != moe_tp_rank_) s.own_ids[i] = -1;
    }
    own = s.own_ids.data();
  }
  s.y.assign(s.experts_num_tokens * top_k_ * hidden_, 0.0f);  // [total * K, H]
  slots_.experts().forward_slots(s.experts_x, s.experts_num_tokens, own, s.y.data(), s.scratch);
}

void AllReduceExperts::combine_start(MoeStageState& s) {
  PhaseTimer timer("comm");
  world_->set_context("moe all-reduce of expert outputs");
  world_->allreduce(s.y.data(), s.y.size(), ReduceOp::kSum);
}

void AllReduceExperts::combine_wait(MoeStageState& s) {
  const int64_t K = top_k_;
  const int64_t offset = s.group_offset;
  combine_reference(s.y.data() + offset * K * hidden_, s.physical_ids.data() + offset * K,
                    s.experts_topk_weights + offset * K, s.num_tokens, top_k_, hidden_, s.out);
}

DispatchedExperts::DispatchedExperts(const ModelConfig& config, const ModelWeights& weights,
                                     const std::string& prefix, int layer,
                                     const ModelParallel& parallel, std::shared_ptr<MoeContext> moe)
    : slots_(config, weights, prefix, layer, parallel, moe),
      layer_(layer),
      top_k_(config.moe.top_k),
      hidden_(config.hidden_size),
      parallel_(parallel),
      moe_(std::move(moe)) {}

void DispatchedExperts::dispatch_start(MoeStageState& s) {
  const int64_t K = top_k_;
  const int64_t H = hidden_;
  Communicator& group = *parallel_.attention_group;
  auto [t0, t1] = token_share(s.num_tokens, group.rank(), group.size());
  s.share_begin = t0;
  s.share_size = t1 - t0;
  const int64_t n = s.share_size;
  s.physical_ids.resize(n * K);  // [n, K]
  slots_.to_physical(s.topk_ids.data() + t0 * K, n * K, parallel_.world->rank(),
                     s.physical_ids.data());
  if (ExpertCountSink* sink = slots_.sink()) {
    sink->on_topk(layer_, s.physical_ids.data(), s.token_offset + t0, n, top_k_);
  }

  PassState& pass = moe_->pass;
  if (!pass.mode_agreed) {
    PhaseTimer timer("comm");
    const int cap = parallel_.num_max_dispatch_tokens_per_rank;
    // On the whole batch's share, so that two-batch overlap keeps the mode of the unsplit batch
    // and each micro-batch dispatches at most max_dispatch_tokens.
    auto [b0, b1] = token_share(pass.num_tokens, group.rank(), group.size());
    const int64_t share = std::max(n, b1 - b0);
    pass.max_dispatch_tokens = 0;
    switch (parallel_.deepep_mode) {
      case DeepepMode::kNormal:
        pass.low_latency = false;
        agree_dispatch_mode(*parallel_.world, true, share, cap, &pass.max_dispatch_tokens);
        break;
      case DeepepMode::kLowLatency:
        pass.low_latency = true;
        break;
      case DeepepMode::kAuto:
        pass.low_latency =
            agree_dispatch_mode(*parallel_.world, pass.has_prefill, share, cap,
                                &pass.max_dispatch_tokens) == DispatchMode::kLowLatency;
        break;
    }
    pass.mode_agreed = true;
  }
  s.dispatcher =
      pass.low_latency ? moe_->low_latency_dispatcher.get() : moe_->normal_dispatcher.get();
  parallel_.world->set_context(fmt::format("layer {} moe dispatch", layer_));
  PhaseTimer timer("comm");
  s.received = false;
  s.handle = s.dispatcher->dispatch_send({s.x + t0 * H, s.physical_ids.data(),
                                          s.topk_weights.data() + t0 * K, n, nullptr,
                                          moe_->pass.max_dispatch_tokens});
}

void DispatchedExperts::dispatch_wait(MoeStageState& s) {
  PhaseTimer timer("comm");
  s.dispatcher->dispatch_recv(s.handle);
  s.received = true;
}

void DispatchedExperts::dispatch_wait_and_compute(MoeStageState& s) {
  const int64_t H = hidden_;
  if (!s.received) dispatch_wait(s);
  const DispatchOutput& received = s.handle.output();
  if (ExpertCountSink* sink = slots_.sink()) {
    sink->on_received(layer_, slots_.first_slot(), received.num_recv_tokens_per_expert.data(),
                      slots_.experts().num_experts());
  }
  float* y = s.handle.y_buffer();  // [num_y_rows, H], expert-major
  std::vector<const float*>& rows = s.scratch.rows;
  for (int e = 0; e < slots_.experts().num_experts(); ++e) {
    int64_t count = received.num_recv_tokens_per_expert[e];
    if (count == 0) continue;
    int64_t offset = received.expert_row_offset[e];
    rows.resize(count);
    for (int64_t j = 0; j < count; ++j) rows[j] = received.expert_input_row(offset + j, H);
    slots_.experts().run_expert(e, rows.data(), count, y + offset * H, s.scratch);
  }
}

void DispatchedExperts::combine_start(MoeStageState& s) {
  parallel_.world->set_context(fmt::format("layer {} moe combine", layer_));
  PhaseTimer timer("comm");
  s.dispatcher->combine_send(s.handle.y_buffer(), s.handle);
}

void DispatchedExperts::combine_wait_rows(MoeStageState& s) {
  PhaseTimer timer("comm");
  s.dispatcher->combine_wait(s.handle);
}

void DispatchedExperts::combine_wait(MoeStageState& s) {
  const int64_t H = hidden_;
  Communicator& group = *parallel_.attention_group;
  s.combined.resize(s.share_size * H);  // [n, H]
  PhaseTimer timer("comm");
  s.dispatcher->combine_recv(s.handle, s.combined.data());
  s.handle = DispatchHandle();  // the dispatcher's buffers go back for the next batch
  // Every rank of the group gets every token's output back.
  std::vector<size_t> bytes(group.size());
  for (int r = 0; r < group.size(); ++r) {
    auto [b, e] = token_share(s.num_tokens, r, group.size());
    bytes[r] = static_cast<size_t>((e - b) * H) * sizeof(float);
  }
  group.set_context(fmt::format("layer {} moe gather", layer_));
  group.allgatherv(s.combined.data(), s.combined.size() * sizeof(float), s.out, bytes);
}

std::unique_ptr<RoutedExperts> make_routed_experts(const ModelConfig& config,
                                                   const ModelWeights& weights,
                                                   const std::string& prefix, int layer,
                                                   const ModelParallel& parallel,
                                                   std::shared_ptr<MoeContext> moe) {
  if (parallel.ep_size == 1 && !moe->location()) {
    return std::make_unique<LocalExperts>(
        load_experts(weights, prefix, config, 0, config.moe.num_experts), config.moe.top_k);
  }
  if (parallel.moe_a2a_backend == MoeA2aBackend::kDeepep) {
    return std::make_unique<DispatchedExperts>(config, weights, prefix, layer, parallel,
                                               std::move(moe));
  }
  return std::make_unique<AllReduceExperts>(config, weights, prefix, layer, parallel,
                                            std::move(moe));
}

}  // namespace epserve
