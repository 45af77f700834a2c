// The mixture-of-experts block as stages (model/moe_stage.h), in the order expert parallelism
// cuts it: route (gate GEMM, scores, top-k ids + weights, observer and recorder hooks) ->
// dispatch start -> dispatch wait + routed experts (all local here, or dispatched to their ranks)
// -> combine start -> combine wait (weighted sum in top-k slot order) + shared experts.
// MoeBlock::forward runs them back to back on one micro-batch; two-batch overlap interleaves the
// stages of two.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "kernels/cpu/routing.h"
#include "model/feed_forward.h"
#include "model/layers.h"
#include "model/moe_context.h"
#include "model/moe_stage.h"
#include "model/parallel.h"

namespace epserve {

class ExpertSlots;

// Sees every routing decision (the recorder and the golden tests use it).
class MoeObserver {
 public:
  virtual ~MoeObserver() = default;
  // topk_ids [num_tokens, top_k] are logical expert ids.
  virtual void on_routing(int layer, int64_t num_tokens, int top_k, const int32_t* topk_ids,
                          const float* topk_weights) = 0;
};

// The routed experts' stages: out[t] = sum_k weights[t,k] * expert_{ids[t,k]}(x[t]) from the
// state's x, topk_ids and topk_weights (set by the route stage) into its out. Each stage is
// called once per micro-batch and layer, in this order; collective stages are called by every
// rank of the world in the same order.
class RoutedExperts {
 public:
  virtual ~RoutedExperts() = default;
  // Maps logical ids to physical slots; deepep: sends this rank's tokens to the experts' ranks.
  virtual void dispatch_start(MoeStageState& s) = 0;
  // deepep: waits for the tokens sent to this rank. Then runs the local experts.
  virtual void dispatch_wait_and_compute(MoeStageState& s) = 0;
  // The wait alone (then dispatch_wait_and_compute only computes); a no-op without dispatch.
  virtual void dispatch_wait(MoeStageState&) {}
  // deepep: sends the expert outputs back; all-reduce: sums them over the world (blocking).
  virtual void combine_start(MoeStageState& s) = 0;
  // Waits for the outputs and writes the weighted sum into s.out.
  virtual void combine_wait(MoeStageState& s) = 0;
  // The wait alone (then combine_wait only sums); a no-op without dispatch.
  virtual void combine_wait_rows(MoeStageState&) {}
  // The expert slots of this rank under expert parallelism (null: every expert is local and
  // logical ids are physical ids).
  virtual ExpertSlots* slots() { return nullptr; }
};

// Routed expert MLPs held by this process: gathers each expert's tokens, runs the expert as one
// GEMM over them, and combines. `experts[i]` serves expert id `first_id + i`.
class LocalExperts : public RoutedExperts {
 public:
  LocalExperts(std::vector<GatedMlp> experts, int top_k, int first_id = 0);
  void dispatch_start(MoeStageState&) override {}
  void dispatch_wait_and_compute(MoeStageState& s) override;
  void combine_start(MoeStageState&) override {}
  void combine_wait(MoeStageState& s) override;
  // The outputs of the (token, slot) pairs whose id this object holds, into rows of
  // y [T * K, hidden]; other rows are left as they are.
  void forward_slots(const float* x, int64_t num_tokens, const int32_t* topk_ids, float* y,
                     ExpertScratch& scratch) const;
  // out[i] = expert `local`(rows[i]) for n input rows; out is [n, hidden].
  void run_expert(int local, const float* const* rows, int64_t n, float* out,
                  ExpertScratch& scratch) const;
  int num_experts() const { return static_cast<int>(experts_.size()); }
  int64_t hidden_size() const;
  const GatedMlp& expert(int local) const { return experts_[local]; }
  // Puts other weights into one slot (live EPLB); the old weights are released.
  void set_expert(int local, GatedMlp mlp) { experts_[local] = std::move(mlp); }

 private:
  std::vector<GatedMlp> experts_;
  int top_k_;
  int first_id_;
};

// Loads the routed experts 0..num_experts-1 of one layer.
std::vector<GatedMlp> load_experts(const ModelWeights& weights, const std::string& prefix,
                                   const ModelConfig& config, int first, int count);

class MoeBlock : public FeedForward {
 public:
  MoeBlock(const ModelConfig& config, const ModelWeights& weights, const std::string& prefix,
           int layer, std::unique_ptr<RoutedExperts> experts,
           std::optional<GatedMlp> shared_experts);
  // All stages back to back on the pass state's first micro-batch.
  void forward(const float* x, int64_t num_tokens, float* out) override;
  // The stages, in order (model/moe_stage.h). begin points the state at the micro-batch.
  void begin(MoeStageState& s, const float* x, int64_t num_tokens, float* out,
             int64_t token_offset = 0) const;
  void route_stage(MoeStageState& s);
  void dispatch_start(MoeStageState& s) { experts_->dispatch_start(s); }
  void dispatch_wait_and_compute(MoeStageState& s) { experts_->dispatch_wait_and_compute(s); }
  void dispatch_wait(MoeStageState& s) { experts_->dispatch_wait(s); }
  void combine_start(MoeStageState& s) { experts_->combine_start(s); }
  void combine_wait_and_shared(MoeStageState& s);
  // The same, split for two-batch overlap: the shared experts into s.shared_out (while the
  // combine is in flight), then the combine's wait and out += shared_out (the same sum).
  void shared_stage(MoeStageState& s);
  void combine_wait_and_add_shared(MoeStageState& s);
  // The combine's wait alone (the routed experts' combine_wait_rows): a trace can tell the wait
  // from the weighted sum that combine_wait_and_add_shared then does.
  void combine_wait_rows(MoeStageState& s);
  void set_observer(MoeObserver* observer) { observer_ = observer; }
  // The model's MoE context (its pass id, the recorder's sink, the micro-batch states); with
  // fake_routing the router's logits are replaced by random ones (--ep-dispatch-algorithm fake).
  void set_context(std::shared_ptr<MoeContext> moe, bool fake_routing);
  RoutedExperts& routed_experts() { return *experts_; }
  // Router only: topk_ids, topk_weights [T, K]; logits is the [T, E] scratch.
  // token_offset: the first token's index in the pass's batch (fake routing draws by it).
  void route(const float* x, int64_t num_tokens, std::vector<float>& logits, int32_t* topk_ids,
             float* topk_weights, int64_t token_offset = 0) const;

 private:
  int layer_;
  int64_t hidden_size_;
  int top_k_;
  Linear gate_;             // [E, hidden]
  Tensor correction_bias_;  // F32 [E] or undefined
  RoutingParams routing_;
  std::unique_ptr<RoutedExperts> experts_;
  std::optional<GatedMlp> shared_;
  MoeObserver* observer_ = nullptr;
  std::shared_ptr<MoeContext> moe_;
  bool fake_routing_ = false;
};

class DenseFeedForward : public FeedForward {
 public:
  explicit DenseFeedForward(GatedMlp mlp) : mlp_(std::move(mlp)) {}
  void forward(const float* x, int64_t num_tokens, float* out) override {
    mlp_.forward(x, num_tokens, out);
  }

 private:
  GatedMlp mlp_;
};

}  // namespace epserve
