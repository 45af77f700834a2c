// Two-batch overlap in the decoder stack: the world's agreement on whether a pass runs it, and
// the layers as the stage program of model/tbo_scheduler.h over the two micro-batches of
// model/tbo_split.h. Embedding, final norm and LM head run on the whole batch. Without overlap
// but with an operation observer (the trace), the same program runs on the whole batch as one
// micro-batch: its operations in order are MoeBlock::forward's stages, so the bits are the same.
// Qwen3-VL's DeepStack additions are an operation at the end of layers 0 .. D-1.
#include <fmt/format.h>

#include <array>
#include <tuple>

#include "comm/communicator.h"
#include "core/phase_timer.h"
#include "ep/expert_location.h"
#include "model/causal_lm.h"
#include "model/tbo_scheduler.h"
#include "model/tbo_split.h"

namespace epserve {

bool CausalLM::agree_two_batch_overlap(const ForwardBatch& batch, bool& extend) {
  if (!parallel_.two_batch_overlap) return false;
  const bool low_latency_forced = parallel_.moe_a2a_backend == MoeA2aBackend::kDeepep &&
                                  parallel_.deepep_mode == DeepepMode::kLowLatency;
  std::vector<int64_t> votes = tbo_vote(batch, low_latency_forced);
  Communicator* world = parallel_.world.get();
  Communicator* group = parallel_.attention_group.get();
  const int group_size = group ? group->size() : 1;
  const int world_size = world ? world->size() : 1;
  // epserve's rule (model/tbo_split.h): a fourth vote, "splitting this group's batch cannot pay".
  static const TboPolicy policy = tbo_policy_from_env();
  const bool multi_node = world != nullptr && world->world().info().nnodes > 1;
  const int num_physical = moe_ && moe_->location() ? moe_->location()->num_physical() : 0;
  const bool small = !batch.seqs.empty() &&
                     !tbo_split_pays(policy, multi_node, batch.num_tokens(),
                                     world_size / group_size, config_.moe.top_k, num_physical);
  votes.push_back(small ? 1 : 0);
  // Every group's ranks hold the same batch; under DP attention the groups differ and vote
  // (SGLang's TboDPAttentionPreparer over its global-info all-gather).
  if (world != nullptr && world_size > group_size) {
    PhaseTimer timer("comm");
    world->set_context("two-batch overlap agreement");
    world->allreduce(votes.data(), votes.size(), ReduceOp::kMax);
  }
  extend = votes[1] != 0;
  const bool split_pays = votes[3] == 0;
  votes.pop_back();
  return tbo_agreed(votes) && split_pays;
}

void CausalLM::forward_layers_staged(const ForwardBatch& batch, KvCache& cache, bool extend,
                                     bool overlapped, float* hidden, float* normed, float* delta) {
  const int64_t H = config_.hidden_size;
  struct MicroBatch {
    const ForwardBatch* batch;
    int64_t first;  // first row in the pass's buffers
    int64_t rows;
  };
  ForwardBatch batch_a, batch_b;
  std::array<MicroBatch, 2> micro = {MicroBatch{&batch, 0, batch.num_tokens()}, MicroBatch{}};
  if (overlapped) {
    const TboSplit split = compute_tbo_split(batch, parallel_.tbo_token_distribution_threshold);
    std::tie(batch_a, batch_b) = split_forward_batch(batch, split);
    micro = {MicroBatch{&batch_a, 0, batch_a.num_tokens()},
             MicroBatch{&batch_b, batch_a.num_tokens(), batch_b.num_tokens()}};
  }
  auto at = [H](float* buffer, const MicroBatch& m) { return buffer + m.first * H; };
  PassState& pass = moe_->pass;
  // Qwen3-VL: after layer l < D, DeepStack feature l goes to each micro-batch's own image rows
  // (split_forward_batch gave each the rows and features of its tokens): an operation right
  // after the layer's last one.
  const int64_t deepstack = batch.num_image_rows() > 0 ? num_deepstack() : 0;
  auto add_deepstack = [&](size_t l, TboProgram& program) {
    if (static_cast<int64_t>(l) >= deepstack) return;
    program.add({"deepstack", static_cast<int>(l), false, [&, l](int i) {
                   const MicroBatch& m = micro[i];
                   if (m.batch->num_image_rows() == 0) return;
                   add_image_embeds(*m.batch, static_cast<int64_t>(l) + 1, at(hidden, m));
                 }});
  };

  TboProgram program;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const int layer = static_cast<int>(l);
    MoeBlock* moe = layers_[l].moe;
    program.add({"attn", layer, false, [&, l](int i) {
                   const MicroBatch& m = micro[i];
                   attention_block(l, *m.batch, cache, at(hidden, m), at(normed, m), at(delta, m));
                 }});
    if (moe == nullptr) {
      program.add({"mlp", layer, false, [&, l](int i) {
                     const MicroBatch& m = micro[i];
                     feed_forward_block(l, m.rows, at(normed, m), at(delta, m), at(hidden, m));
                   }});
      add_deepstack(l, program);
      continue;
    }
    auto state = [&pass](int i) -> MoeStageState& { return pass.micro_batches[i]; };
    if (!extend) program.yield();
    program.add({"route", layer, false, [&, moe](int i) {
                   const MicroBatch& m = micro[i];
                   moe->begin(state(i), at(normed, m), m.rows, at(delta, m), m.first);
                   moe->route_stage(state(i));
                 }});
    if (!extend) program.yield();
    program.add(
        {"dispatch_start", layer, true, [&, moe](int i) { moe->dispatch_start(state(i)); }});
    if (!extend) {
      program.add({"shared", layer, false, [&, moe](int i) { moe->shared_stage(state(i)); }});
    }
    program.yield();
    program.add({"dispatch_wait", layer, true, [&, moe](int i) { moe->dispatch_wait(state(i)); }});
    program.add(
        {"experts", layer, false, [&, moe](int i) { moe->dispatch_wait_and_compute(state(i)); }});
    program.add({"combine_start", layer, true, [&, moe](int i) { moe->combine_start(state(i)); }});
    program.yield();
    if (extend) {
      program.add({"shared", layer, false, [&, moe](int i) { moe->shared_stage(state(i)); }});
    }
    program.add(
        {"combine_wait", layer, true, [&, moe](int i) { moe->combine_wait_rows(state(i)); }});
    // The weighted sum of the returned rows, the shared experts' and the residual add: compute.
    program.add({"combine_sum", layer, false, [&, moe](int i) {
                   const MicroBatch& m = micro[i];
                   moe->combine_wait_and_add_shared(state(i));
                   float* h = at(hidden, m);
                   const float* d = at(delta, m);
                   for (int64_t j = 0; j < m.rows * H; ++j) h[j] += d[j];
                 }});
    add_deepstack(l, program);
    if (!extend) program.yield();
  }
  if (overlapped) {
    run_overlapped(program.finish(), tbo_delta_stages(extend), op_observer_);
  } else {
    run_single(program.finish(), op_observer_);
  }
}

}  // namespace epserve
