// How one rank's share of the model is cut: its attention heads (tensor parallel inside its
// attention group), its expert slots (expert parallel over the whole world), and the
// communicators and dispatchers that join the pieces. A single process uses the defaults.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "model/layers.h"
#include "model/moe_stage.h"

namespace epserve {

class Communicator;
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
  ExpertCountSink* expert_sink = nullptr;  // set while the recorder records
  std::array<MoeStageState, 2> micro_batches;
};

// SGLang's --moe-a2a-backend: "none" (every rank sees every token; expert outputs are summed
// over ranks) or "deepep" (each rank sends its share of the tokens to the experts' ranks).
enum class MoeA2aBackend { kNone, kDeepep };
// SGLang's --deepep-mode.
enum class DeepepMode { kAuto, kNormal, kLowLatency };
// SGLang's --ep-dispatch-algorithm: which replica of a logical expert a token goes to.
//   static   a fixed table per sending rank (its own replica when it has one)
//   dynamic  a random replica per (token, k), drawn from a hash of (pass, layer, sender, entry)
//   fake     the router's logits replaced by random ones and dynamic replicas: perfect balance
//            for benchmarks; it CHANGES THE OUTPUTS
enum class EpDispatchAlgorithm { kStatic, kDynamic, kFake };

struct ModelParallel {
  Shard attention_heads;  // this rank's share of the heads: rank and size of its attention group
  // Dense layers' MLP (first_k_dense_replace): split like the heads, or whole on every rank
  // with --moe-dense-tp-size 1.
  Shard dense_mlp;
  // --enable-dp-lm-head: the LM head's vocabulary is split over the attention group.
  bool vocab_parallel_lm_head = false;
  std::shared_ptr<Communicator> attention_group;  // null when the group is this rank alone
  std::shared_ptr<Communicator> world;            // every rank (the MoE layers); null: alone
  // Experts: slots are split over ep_size groups of world_size / ep_size ranks (moe_tp_size);
  // the ranks of a group hold the same slots and share their tokens (each (token, slot) row is
  // computed by exactly one of them, so the sum over ranks stays exact).
  int ep_size = 1;
  int ep_rank = 0;
  int moe_tp_size = 1;
  int moe_tp_rank = 0;
  MoeA2aBackend moe_a2a_backend = MoeA2aBackend::kNone;
  DeepepMode deepep_mode = DeepepMode::kAuto;
  int num_max_dispatch_tokens_per_rank = 128;
  EpDispatchAlgorithm ep_dispatch_algorithm = EpDispatchAlgorithm::kStatic;
  // Expert slots per layer; null: the trivial placement of the model's experts over ep_size.
  std::shared_ptr<const ep::ExpertLocation> expert_location;
  // deepep: one dispatcher of each mode, shared by all MoE layers (made by load_causal_lm).
  std::shared_ptr<Dispatcher> normal_dispatcher;
  std::shared_ptr<Dispatcher> low_latency_dispatcher;
  std::shared_ptr<PassState> pass = std::make_shared<PassState>();
  // Called after each decoder layer is loaded (done, total), e.g. for a progress bar.
  std::function<void(int, int)> on_layer_loaded;
};

}  // namespace epserve
