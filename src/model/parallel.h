// How one rank's share of the model is cut, fixed for the life of the job: its attention heads
// (tensor parallel inside its attention group), its expert slots (expert parallel over the whole
// world), how the MoE layers reach the experts, and the communicators that join the pieces. A
// single process uses the defaults. The live side of the MoE layers (placement, dispatchers, pass
// state) is the runtime's MoeContext (model/moe_context.h).
#pragma once

#include <cstdint>
#include <memory>

#include "model/layers.h"

namespace epserve {

class Communicator;

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
  // --enable-two-batch-overlap and its split threshold (model/tbo_split.h).
  bool two_batch_overlap = false;
  double tbo_token_distribution_threshold = 0.48;
};

}  // namespace epserve
