#include "model/moe_parallel.h"

#include <fmt/format.h>

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
                         const std::string& prefix, int layer, const ModelParallel& parallel)
    : layer_(layer),
      moe_tp_size_(parallel.moe_tp_size),
      algorithm_(parallel.ep_dispatch_algorithm),
      pass_(parallel.pass),
      location_(parallel.expert_location) {
  const ep::ExpertLocation& location = *location_;
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
  for (int r = 0; r < location_->ep_size(); ++r) {
    tables_.push_back(ep::static_dispatch_row(*location_, layer_, r));
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
  const uint64_t seed = (static_cast<uint64_t>(pass_->pass_id) << 24) ^
                        (static_cast<uint64_t>(layer_) << 12) ^ static_cast<uint64_t>(owner);
  for (int64_t begin = 0; begin < count;) {
    int64_t end = begin;
    while (end < count && logical[end] >= 0) ++end;
    ep::logical_to_physical_dynamic(*location_, layer_, seed ^ (static_cast<uint64_t>(begin) << 40),
                                      {logical + begin, static_cast<size_t>(end - begin)},
                                      {physical + begin, static_cast<size_t>(end - begin)});
    if (end < count) physical[end] = -1;
    begin = end + 1;
  }
}

void ExpertSlots::commit(std::shared_ptr<const ep::ExpertLocation> location,
                         std::vector<std::pair<int, GatedMlp>> replacements) {
  EPS_CHECK(location->num_physical() == num_physical_,
            "layer {}: the new placement has {} slots, this one {}", layer_,
            location->num_physical(), num_physical_);
  for (auto& [local, mlp] : replacements) {
    EPS_CHECK(local >= 0 && local < experts_->num_experts(), "layer {}: no local slot {}", layer_,
              local);
    experts_->set_expert(local, std::move(mlp));
  }
  location_ = std::move(location);
  build_tables();
}

AllReduceExperts::AllReduceExperts(const ModelConfig& config, const ModelWeights& weights,
                                   const std::string& prefix, int layer,
                                   const ModelParallel& parallel)
    : slots_(config, weights, prefix, layer, parallel),
      top_k_(config.moe.top_k),
      hidden_(config.hidden_size),
      world_(parallel.world),
      group_(parallel.attention_group),
      moe_tp_size_(parallel.moe_tp_size),
      moe_tp_rank_(parallel.moe_tp_rank) {}

void AllReduceExperts::forward(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                               const float* topk_weights, float* out) {
  const int64_t K = top_k_;
  const int64_t H = hidden_;
  const int ranks = world_->size();
  // The batch every rank works on: with one attention group, its own (every rank has every
  // token); with DP attention, the tokens of all groups, gathered (each rank contributes its
  // share of its group's tokens, so every token comes once).
  const float* gx = x;
  const int32_t* gids = topk_ids;
  const float* gweights = topk_weights;
  int64_t total = num_tokens;
  int64_t my_group_offset = 0;
  std::vector<float> all_x, all_weights;
  std::vector<int32_t> all_ids;
  std::vector<int64_t> counts(ranks, 0);  // tokens each world rank contributes
  const bool dp = group_->size() < ranks;
  if (dp) {
    auto [s0, s1] = token_share(num_tokens, group_->rank(), group_->size());
    int64_t mine = s1 - s0;
    {
      PhaseTimer timer("comm");
      world_->set_context("moe gather of the groups' tokens");
      world_->allgather(&mine, sizeof(mine), counts.data());
      total = 0;
      for (int r = 0; r < ranks; ++r) total += counts[r];
      auto gather = [&](const void* send, size_t row_bytes, void* recv) {
        std::vector<size_t> bytes(ranks);
        for (int r = 0; r < ranks; ++r) bytes[r] = static_cast<size_t>(counts[r]) * row_bytes;
        world_->allgatherv(send, static_cast<size_t>(mine) * row_bytes, recv, bytes);
      };
      all_x.resize(total * H);
      all_ids.resize(total * K);
      all_weights.resize(total * K);
      gather(x + s0 * H, H * sizeof(float), all_x.data());
      gather(topk_ids + s0 * K, K * sizeof(int32_t), all_ids.data());
      gather(topk_weights + s0 * K, K * sizeof(float), all_weights.data());
    }
    // This group's tokens start where its first rank's share does.
    const int first_rank = world_->rank() - group_->rank();
    for (int r = 0; r < first_rank; ++r) my_group_offset += counts[r];
    gx = all_x.data();
    gids = all_ids.data();
    gweights = all_weights.data();
  } else {
    for (int r = 0; r < ranks; ++r) {
      auto [t0, t1] = token_share(num_tokens, r, ranks);
      counts[r] = t1 - t0;
    }
  }
  // Every rank maps every token the way the token's owner (the rank that contributed it)
  // would, so all ranks agree on which slot serves each (token, k).
  std::vector<int32_t> physical(total * K);  // [total, K]
  int64_t t0 = 0;
  for (int r = 0; r < ranks; ++r) {
    slots_.to_physical(gids + t0 * K, counts[r] * K, r, physical.data() + t0 * K);
    t0 += counts[r];
  }
  if (ExpertCountSink* sink = slots_.sink()) {
    // Count only the tokens this rank contributed (every rank maps all of them).
    const int me = world_->rank();
    int64_t offset = 0;
    for (int r = 0; r < me; ++r) offset += counts[r];
    const int group_rank = dp ? group_->rank() : me;
    const int group_size = dp ? group_->size() : ranks;
    sink->on_topk(slots_.layer(), physical.data() + offset * K,
                  token_share(num_tokens, group_rank, group_size).first, counts[me], top_k_);
  }
  // Ranks holding the same slots take every moe_tp_size-th (token, k) row each.
  std::vector<int32_t> mine = physical;
  if (moe_tp_size_ > 1) {
    for (size_t i = 0; i < mine.size(); ++i) {
      if (static_cast<int>(i % moe_tp_size_) != moe_tp_rank_) mine[i] = -1;
    }
  }
  std::vector<float> y(total * K * H, 0.0f);  // [total * K, H]
  slots_.experts().forward_slots(gx, total, mine.data(), y.data());
  {
    PhaseTimer timer("comm");
    world_->set_context("moe all-reduce of expert outputs");
    world_->allreduce(y.data(), y.size(), ReduceOp::kSum);
  }
  combine_reference(y.data() + my_group_offset * K * H, physical.data() + my_group_offset * K,
                    gweights + my_group_offset * K, num_tokens, top_k_, H, out);
}

DispatchedExperts::DispatchedExperts(const ModelConfig& config, const ModelWeights& weights,
                                     const std::string& prefix, int layer,
                                     const ModelParallel& parallel)
    : slots_(config, weights, prefix, layer, parallel),
      layer_(layer),
      top_k_(config.moe.top_k),
      hidden_(config.hidden_size),
      parallel_(parallel) {}

void DispatchedExperts::forward(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                                const float* topk_weights, float* out) {
  const int64_t K = top_k_;
  const int64_t H = hidden_;
  Communicator& group = *parallel_.attention_group;
  auto [t0, t1] = token_share(num_tokens, group.rank(), group.size());
  const int64_t n = t1 - t0;
  std::vector<int32_t> physical(n * K);  // [n, K]
  slots_.to_physical(topk_ids + t0 * K, n * K, parallel_.world->rank(), physical.data());
  ExpertCountSink* sink = slots_.sink();
  if (sink) sink->on_topk(layer_, physical.data(), t0, n, top_k_);

  PassState& pass = *parallel_.pass;
  if (!pass.mode_agreed) {
    PhaseTimer timer("comm");
    const int cap = parallel_.num_max_dispatch_tokens_per_rank;
    switch (parallel_.deepep_mode) {
      case DeepepMode::kNormal:
        pass.low_latency = false;
        break;
      case DeepepMode::kLowLatency:
        pass.low_latency = true;
        break;
      case DeepepMode::kAuto:
        pass.low_latency = agree_dispatch_mode(*parallel_.world, pass.has_prefill, n, cap) ==
                           DispatchMode::kLowLatency;
        break;
    }
    pass.mode_agreed = true;
  }
  Dispatcher& dispatcher =
      pass.low_latency ? *parallel_.low_latency_dispatcher : *parallel_.normal_dispatcher;
  parallel_.world->set_context(fmt::format("layer {} moe dispatch", layer_));
  DispatchHandle handle = [&] {
    PhaseTimer timer("comm");
    return dispatcher.dispatch({x + t0 * H, physical.data(), topk_weights + t0 * K, n, nullptr});
  }();
  const DispatchOutput& received = handle.output();
  if (sink) {
    sink->on_received(layer_, slots_.first_slot(), received.num_recv_tokens_per_expert.data(),
                      slots_.experts().num_experts());
  }
  float* y = handle.y_buffer();  // [num_y_rows, H], expert-major
  std::vector<const float*> rows;
  for (int e = 0; e < slots_.experts().num_experts(); ++e) {
    int64_t count = received.num_recv_tokens_per_expert[e];
    if (count == 0) continue;
    int64_t offset = received.expert_row_offset[e];
    rows.resize(count);
    for (int64_t j = 0; j < count; ++j) rows[j] = received.expert_input_row(offset + j, H);
    slots_.experts().run_expert(e, rows.data(), count, y + offset * H);
  }
  parallel_.world->set_context(fmt::format("layer {} moe combine", layer_));
  std::vector<float> share(n * H);  // [n, H]
  PhaseTimer timer("comm");
  dispatcher.combine(y, handle, share.data());
  // Every rank of the group gets every token's output back.
  std::vector<size_t> bytes(group.size());
  for (int r = 0; r < group.size(); ++r) {
    auto [b, e] = token_share(num_tokens, r, group.size());
    bytes[r] = static_cast<size_t>((e - b) * H) * sizeof(float);
  }
  group.set_context(fmt::format("layer {} moe gather", layer_));
  group.allgatherv(share.data(), share.size() * sizeof(float), out, bytes);
}

std::unique_ptr<RoutedExperts> make_routed_experts(const ModelConfig& config,
                                                   const ModelWeights& weights,
                                                   const std::string& prefix, int layer,
                                                   const ModelParallel& parallel) {
  if (parallel.ep_size == 1 && !parallel.expert_location) {
    return std::make_unique<LocalExperts>(
        load_experts(weights, prefix, config, 0, config.moe.num_experts), config.moe.top_k);
  }
  if (parallel.moe_a2a_backend == MoeA2aBackend::kDeepep) {
    return std::make_unique<DispatchedExperts>(config, weights, prefix, layer, parallel);
  }
  return std::make_unique<AllReduceExperts>(config, weights, prefix, layer, parallel);
}

}  // namespace epserve
