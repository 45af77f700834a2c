// The live side of one rank's MoE layers, made by the runtime (runtime/parallel_setup.h) and
// shared by every MoE layer of its model:
//   - the expert placement: the context is its only owner; the layers read their rows from it and
//     live EPLB replaces it a chunk of layers at a time (set_location);
//   - the dispatchers (--moe-a2a-backend deepep), one of each mode;
//   - the state of the forward pass in progress, with the micro-batches' MoE stage buffers.
// The static side (who holds which heads and slots) is ModelParallel (model/parallel.h).
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "model/moe_stage.h"

namespace epserve {

class Dispatcher;
namespace ep {
class ExpertLocation;
}

// Sees which physical experts the tokens of this rank go to (the expert-distribution recorder).
// Every rank reports only the tokens it sends: its share [first_token, first_token + num_tokens)
// of its attention group's batch (the whole batch on one rank), so summing over ranks counts
// every token once.
class ExpertCountSink {
 public:
  virtual ~ExpertCountSink() = default;
  // physical_ids [num_tokens, top_k]; -1 entries are skipped.
  virtual void on_topk(int layer, const int32_t* physical_ids, int64_t first_token,
                       int64_t num_tokens, int top_k) = 0;
  // Rows the dispatcher delivered to this rank's slots (first_slot .. first_slot + n - 1).
  virtual void on_received(int layer, int first_slot, const int64_t* rows_per_slot, int n) = 0;
};

// State of the forward pass in progress, shared by the layers of one model: whether the batch
// has prompt tokens (DeepEP's auto mode picks normal dispatch then) and the dispatch mode all
// ranks agreed on for this pass (agreed once, at its first MoE layer). pass_id counts forward
// passes; every rank of the world runs the same passes, so it is the same on all of them.
// micro_batches holds the MoE stage state (buffers included) of each micro-batch in flight:
// one without two-batch overlap, two with it.
struct PassState {
  bool has_prefill = false;
  bool mode_agreed = false;
  bool low_latency = false;
  int64_t pass_id = 0;
  // Tokens of this rank's batch in the pass (both micro-batches): the dispatch mode is agreed on
  // it, so that splitting the batch never changes the mode.
  int64_t num_tokens = 0;
  // The most tokens any rank dispatches in this pass (agreed with the mode; 0 in low-latency
  // mode): the normal dispatcher places rows with it and needs no count round.
  int64_t max_dispatch_tokens = 0;
  ExpertCountSink* expert_sink = nullptr;  // set while the recorder records
  std::array<MoeStageState, 2> micro_batches;
};

class MoeContext {
 public:
  MoeContext() = default;
  explicit MoeContext(std::shared_ptr<const ep::ExpertLocation> location);

  // The placement in force; null when every expert is local (one process without a map).
  const std::shared_ptr<const ep::ExpertLocation>& location() const { return location_; }
  // Replaces the placement (the same sizes); the layers whose rows change must then rebuild
  // their tables (ExpertSlots::commit).
  void set_location(std::shared_ptr<const ep::ExpertLocation> location);

  std::shared_ptr<Dispatcher> normal_dispatcher;
  std::shared_ptr<Dispatcher> low_latency_dispatcher;
  PassState pass;

 private:
  std::shared_ptr<const ep::ExpertLocation> location_;
};

}  // namespace epserve
