// The state of one micro-batch while it passes through a MoE layer, stage by stage:
//
//   route            router GEMM, top-k ids and weights, recorder hooks        (MoeBlock)
//   dispatch_start   logical -> physical ids; deepep: sends the tokens out      (RoutedExperts)
//   dispatch_wait    deepep: waits for the tokens that come in; then the local
//     + experts      experts run on them
//   combine_start    deepep: sends expert outputs back; none: all-reduce
//   combine_wait     the weighted sum in top-k slot order into out
//     + shared       + the shared experts                                       (MoeBlock)
//
// Between dispatch_start and dispatch_wait, and between combine_start and combine_wait, a
// micro-batch's communication is in flight and another micro-batch's compute may run (two-batch
// overlap). Everything a micro-batch needs between stages is here; the buffers keep their
// capacity from layer to layer and pass to pass, so a forward pass does not allocate once they
// have grown. The pass state (model/parallel.h) owns one per micro-batch.
#pragma once

#include <cstdint>
#include <vector>

#include "ep/dispatcher.h"
#include "model/layers.h"

namespace epserve {

// Scratch of a layer's local experts: the (token, slot) pairs of each expert, their input rows
// packed, and the expert's outputs.
struct ExpertScratch {
  std::vector<std::vector<int64_t>> pairs;  // per local expert: (token * K + k) indices
  std::vector<const float*> rows;           // input rows of one expert
  std::vector<float> packed_x;              // [n, H]
  std::vector<float> packed_y;              // [n, H]
  MlpScratch mlp;
  std::vector<int64_t> active;  // local experts with at least one pair
};

struct MoeStageState {
  // The micro-batch: x [num_tokens, H] in, out [num_tokens, H] written by combine_wait.
  const float* x = nullptr;
  int64_t num_tokens = 0;
  float* out = nullptr;
  int64_t token_offset = 0;  // the micro-batch's first token in the pass's batch

  // route
  std::vector<float> router_logits;  // [num_tokens, E]
  std::vector<int32_t> topk_ids;     // [num_tokens, K] logical expert ids
  std::vector<float> topk_weights;   // [num_tokens, K]

  // The tokens this rank's expert stage maps: the micro-batch itself, or, for the all-reduce
  // backend under DP attention, every group's tokens gathered (gathered_* hold them).
  const float* experts_x = nullptr;
  const int32_t* experts_topk_ids = nullptr;
  const float* experts_topk_weights = nullptr;
  int64_t experts_num_tokens = 0;
  std::vector<float> gathered_x;
  std::vector<int32_t> gathered_topk_ids;
  std::vector<float> gathered_topk_weights;
  std::vector<int64_t> tokens_per_rank;  // all-reduce: tokens each world rank contributed
  int64_t group_offset = 0;              // all-reduce: where this group's tokens start

  // deepep: this rank's share [share_begin, share_begin + share_size) of its group's tokens.
  int64_t share_begin = 0;
  int64_t share_size = 0;

  std::vector<int32_t> physical_ids;  // [mapped tokens, K] physical slots, -1 = none
  std::vector<int32_t> own_ids;       // all-reduce with moe_tp > 1: the rows this rank computes
  std::vector<float> y;               // local / all-reduce: expert outputs [tokens * K, H]

  Dispatcher* dispatcher = nullptr;  // deepep: the mode this pass agreed on
  DispatchHandle handle;             // deepep: between dispatch_start and combine_wait
  bool received = false;             // deepep: dispatch_wait ran (the trace times it alone)
  std::vector<float> combined;       // deepep: [share_size, H] back from combine

  std::vector<float> shared_out;  // [num_tokens, H]
  ExpertScratch scratch;
};

}  // namespace epserve
