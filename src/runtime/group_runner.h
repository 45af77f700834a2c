// Lockstep execution inside an attention group: the group's leader (which runs the scheduler or
// the offline generator) hands every forward batch to the other ranks of the group, and all of
// them run the same step; the MoE layers join all ranks of the world.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model_runner.h"

namespace epserve {

class Communicator;

// The leader's runner: broadcasts the batch over the group, then runs its own share.
class GroupLeaderRunner : public ModelRunner {
 public:
  GroupLeaderRunner(CausalLM& model, int64_t num_kv_slots, std::shared_ptr<Communicator> group,
                    const KvAllocator& allocate_kv = {});
  // Tells the other ranks of the group to stop.
  ~GroupLeaderRunner() override;
  void forward(const ForwardBatch& batch, float* logits) override;
  // Hands a command to the other ranks of the group between two batches (their on_control runs
  // it); the leader runs it itself after this returns.
  void send_control(int64_t code);
  // Runs a task on every rank of the group between two batches (PD disaggregation's KV
  // transfer): the followers' on_task gets `payload`, the leader runs `local` on it; returns
  // every rank's answer in group rank order.
  std::vector<std::string> run_task(const std::string& payload,
                                    const std::function<std::string(const std::string&)>& local);
  const ModelConfig& config() const override { return local_.config(); }
  int64_t num_kv_slots() const override { return local_.num_kv_slots(); }
  // The leader alone runs the vision tower; its output reaches the other ranks of the group
  // inside the forward batch (ForwardBatch::image_embeds) with the chunk that needs it.
  void encode_image(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                    float* out) override {
    local_.encode_image(grid_t, grid_h, grid_w, pixels, out);
  }
  const KvCache& cache() const { return local_.cache(); }
  KvCache& cache() { return local_.cache(); }

 private:
  LocalModelRunner local_;
  std::shared_ptr<Communicator> group_;
};

// A non-leader rank: runs the batches its leader sends until told to stop, and the commands its
// leader hands over (send_control) with on_control. Waiting for the next batch has no deadline
// (a server may idle), but a failed rank still ends it.
void run_group_follower(CausalLM& model, int64_t num_kv_slots, Communicator& group,
                        const std::function<void(int64_t)>& on_control = {});

struct FollowerHooks {
  std::function<void(int64_t)> on_control;
  // Where this rank's KV cache memory comes from (model/kv_cache.h); empty: the heap.
  KvAllocator allocate_kv;
  // Before the first batch, with this rank's KV cache (the leader runs its side of any
  // collective in it at the same point).
  std::function<void(KvCache&)> on_start;
  // The leader's run_task: this rank's answer.
  std::function<std::string(const std::string&)> on_task;
  // When the follower stops (or throws), before its KV cache goes: whatever reads the cache
  // (a KV send in flight) must end here.
  std::function<void()> on_stop;
};
void run_group_follower(CausalLM& model, int64_t num_kv_slots, Communicator& group,
                        const FollowerHooks& hooks);

// Every rank's string, in rank order, on every rank of `group` (`what` names the exchange in
// errors).
std::vector<std::string> gather_answers(Communicator& group, const std::string& mine,
                                        const std::string& what);

}  // namespace epserve
