// How one rank's share of the model is cut: its attention heads (tensor parallel inside its
// attention group), its expert slots (expert parallel over the whole world), and the
// communicators and dispatchers that join the pieces. A single process uses the defaults.
#pragma once

#include <functional>
#include <memory>

#include "model/layers.h"

namespace epserve {

class Communicator;
class Dispatcher;
namespace eplb {
class ExpertLocation;
}

// State of the forward pass in progress, shared by the layers of one model: whether the batch
// has prompt tokens (DeepEP's auto mode picks normal dispatch then) and the dispatch mode all
// ranks agreed on for this pass (agreed once, at its first MoE layer).
struct PassState {
  bool has_prefill = false;
  bool mode_agreed = false;
  bool low_latency = false;
  int64_t pass_id = 0;
};

// SGLang's --moe-a2a-backend: "none" (every rank sees every token; expert outputs are summed
// over ranks) or "deepep" (each rank sends its share of the tokens to the experts' ranks).
enum class MoeA2aBackend { kNone, kDeepep };
// SGLang's --deepep-mode.
enum class DeepepMode { kAuto, kNormal, kLowLatency };

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
  // Expert slots per layer; null: the trivial placement of the model's experts over ep_size.
  std::shared_ptr<const eplb::ExpertLocation> expert_location;
  // deepep: one dispatcher of each mode, shared by all MoE layers (made by load_causal_lm).
  std::shared_ptr<Dispatcher> normal_dispatcher;
  std::shared_ptr<Dispatcher> low_latency_dispatcher;
  std::shared_ptr<PassState> pass = std::make_shared<PassState>();
  // Called after each decoder layer is loaded (done, total), e.g. for a progress bar.
  std::function<void(int, int)> on_layer_loaded;
};

}  // namespace epserve
