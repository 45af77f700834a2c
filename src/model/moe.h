// The mixture-of-experts block, written in the order expert parallelism cuts it:
//   router (gate GEMM, scores, top-k ids + weights) -> observer hook (the expert-distribution
//   recorder) -> routed experts (all local here, or dispatched to their ranks) -> weighted
//   combine in top-k slot order -> + shared experts.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "kernels/cpu/routing.h"
#include "model/feed_forward.h"
#include "model/layers.h"
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

// Runs the routed experts: out[t] = sum_k weights[t,k] * expert_{ids[t,k]}(x[t]).
class RoutedExperts {
 public:
  virtual ~RoutedExperts() = default;
  virtual void forward(const float* x, int64_t num_tokens, const int32_t* topk_ids,
                       const float* topk_weights, float* out) = 0;
  // The expert slots of this rank under expert parallelism (null: every expert is local and
  // logical ids are physical ids).
  virtual ExpertSlots* slots() { return nullptr; }
};

// Routed expert MLPs held by this process: gathers each expert's tokens, runs the expert as one
// GEMM over them, and combines. `experts[i]` serves expert id `first_id + i`.
class LocalExperts : public RoutedExperts {
 public:
  LocalExperts(std::vector<GatedMlp> experts, int top_k, int first_id = 0);
  void forward(const float* x, int64_t num_tokens, const int32_t* topk_ids,
               const float* topk_weights, float* out) override;
  // The outputs of the (token, slot) pairs whose id this object holds, into rows of
  // y [T * K, hidden]; other rows are left as they are.
  void forward_slots(const float* x, int64_t num_tokens, const int32_t* topk_ids, float* y) const;
  // out[i] = expert `local`(rows[i]) for n input rows; out is [n, hidden].
  void run_expert(int local, const float* const* rows, int64_t n, float* out) const;
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
  void forward(const float* x, int64_t num_tokens, float* out) override;
  void set_observer(MoeObserver* observer) { observer_ = observer; }
  // The model's pass state (its pass id and the recorder's sink); with fake_routing the router's
  // logits are replaced by random ones (SGLang's --ep-dispatch-algorithm fake).
  void set_pass_state(std::shared_ptr<PassState> pass, bool fake_routing);
  RoutedExperts& routed_experts() { return *experts_; }
  // Router only: topk_ids, topk_weights [T, K].
  void route(const float* x, int64_t num_tokens, int32_t* topk_ids, float* topk_weights) const;

 private:
  int layer_;
  int64_t hidden_size_;
  int top_k_;
  Linear gate_;                // [E, hidden]
  Tensor correction_bias_;     // F32 [E] or undefined
  RoutingParams routing_;
  std::unique_ptr<RoutedExperts> experts_;
  std::optional<GatedMlp> shared_;
  MoeObserver* observer_ = nullptr;
  std::shared_ptr<PassState> pass_;
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
