// Routed experts spread over ranks (expert parallelism). Each rank holds the experts of its
// physical slots; a token's top-k logical ids are mapped to physical slots through the expert
// location map, then the experts are reached in one of SGLang's two ways:
//  - AllReduceExperts (--moe-a2a-backend none): every rank works on every token (with DP
//    attention, the groups' tokens are gathered first); each computes the (token, slot) rows
//    whose expert it holds, the rows are summed over ranks (one rank computes each row, so the
//    sum is exact), and every rank combines its own group's tokens.
//  - DispatchedExperts (--moe-a2a-backend deepep): each rank of an attention group takes an
//    equal share of the group's tokens, dispatches them to the experts' ranks, runs its
//    experts on what arrives, combines what comes back, and the group gathers the shares.
// Both end in the same slot-order weighted sum as one rank, so expert parallelism alone never
// changes a bit of the output.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "model/moe.h"
#include "model/parallel.h"

namespace epserve {

namespace ep {
class ExpertLocation;
}

// The slots of one layer this rank holds and the logical -> physical choice it makes. Live EPLB
// changes both between forward passes (commit).
class ExpertSlots {
 public:
  ExpertSlots(const ModelConfig& config, const ModelWeights& weights, const std::string& prefix,
              int layer, const ModelParallel& parallel, std::shared_ptr<MoeContext> moe);
  int layer() const { return layer_; }
  int first_slot() const { return first_slot_; }
  int num_physical() const { return num_physical_; }
  LocalExperts& experts() { return *experts_; }
  const LocalExperts& experts() const { return *experts_; }
  // The placement this layer routes with: the MoE context's.
  const ep::ExpertLocation& location() const { return *moe_->location(); }
  // Physical ids for the top-k logical ids of tokens that world rank `owner` sends: its static
  // table (a replica on its expert-parallel rank when there is one), or a replica drawn from
  // (pass, layer, owner, entry) for dynamic/fake dispatch. Negative ids stay -1.
  void to_physical(const int32_t* logical, int64_t count, int owner, int32_t* physical) const;
  // Switches this layer to the placement now in the MoE context (set_location first);
  // `replacements` holds the new weights of the local slots (index from first_slot) whose expert
  // changes.
  void commit(std::vector<std::pair<int, GatedMlp>> replacements);
  // The recorder's sink of this pass, if it records.
  ExpertCountSink* sink() const { return moe_->pass.expert_sink; }

 private:
  void build_tables();

  int layer_;
  int first_slot_;
  int num_physical_;
  int moe_tp_size_;
  EpDispatchAlgorithm algorithm_;
  std::shared_ptr<MoeContext> moe_;
  std::vector<std::vector<int32_t>> tables_;  // per expert-parallel rank: logical -> physical
  std::unique_ptr<LocalExperts> experts_;
};

class AllReduceExperts : public RoutedExperts {
 public:
  AllReduceExperts(const ModelConfig& config, const ModelWeights& weights,
                   const std::string& prefix, int layer, const ModelParallel& parallel,
                   std::shared_ptr<MoeContext> moe);
  // Under DP attention, gathers every group's tokens; maps them all as their owners would.
  void dispatch_start(MoeStageState& s) override;
  void dispatch_wait_and_compute(MoeStageState& s) override;
  // The world all-reduce of the expert outputs (blocking: the communicator has no split form).
  void combine_start(MoeStageState& s) override;
  void combine_wait(MoeStageState& s) override;
  ExpertSlots* slots() override { return &slots_; }

 private:
  ExpertSlots slots_;
  int top_k_;
  int64_t hidden_;
  std::shared_ptr<Communicator> world_;
  std::shared_ptr<Communicator> group_;
  int moe_tp_size_;
  int moe_tp_rank_;
};

class DispatchedExperts : public RoutedExperts {
 public:
  DispatchedExperts(const ModelConfig& config, const ModelWeights& weights,
                    const std::string& prefix, int layer, const ModelParallel& parallel,
                    std::shared_ptr<MoeContext> moe);
  // Agrees the pass's dispatch mode at its first MoE layer, then dispatch_send of this rank's
  // share of its group's tokens; dispatch_recv, combine_send and combine_recv in the next stages;
  // combine_wait gathers the shares over the attention group.
  void dispatch_start(MoeStageState& s) override;
  void dispatch_wait_and_compute(MoeStageState& s) override;
  void dispatch_wait(MoeStageState& s) override;
  void combine_start(MoeStageState& s) override;
  void combine_wait(MoeStageState& s) override;
  void combine_wait_rows(MoeStageState& s) override;
  ExpertSlots* slots() override { return &slots_; }

 private:
  ExpertSlots slots_;
  int layer_;
  int top_k_;
  int64_t hidden_;
  ModelParallel parallel_;
  std::shared_ptr<MoeContext> moe_;
};

// The routed experts of one layer for the given layout: LocalExperts on one rank, else one of
// the above.
std::unique_ptr<RoutedExperts> make_routed_experts(const ModelConfig& config,
                                                   const ModelWeights& weights,
                                                   const std::string& prefix, int layer,
                                                   const ModelParallel& parallel,
                                                   std::shared_ptr<MoeContext> moe);

}  // namespace epserve
