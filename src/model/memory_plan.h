// `epserve plan`: what a checkpoint needs per rank, from config.json alone (and the safetensors
// index's total_size, when there is one, as a cross-check): every tensor's bytes as stored in the
// checkpoint's format (model_tensor_specs for the shapes, quantization_config for which layers
// are FP8 blocks or packed INT4), split by where EP puts them, and the KV cache bytes per token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace epserve {

struct WeightBytes {
  double routed_experts = 0;  // all routed experts of all MoE layers
  double sharded = 0;         // attention, dense MLPs, shared experts: split by tensor parallelism
  double replicated = 0;      // embeddings, lm_head, norms, routers
  double total() const { return routed_experts + sharded + replicated; }
};

// Bytes of every tensor as the checkpoint stores it.
WeightBytes checkpoint_weight_bytes(const ModelConfig& config);

struct RankMemory {
  int world_size = 0;
  double dp_attention_bytes = 0;  // --enable-dp-attention --dp-size W, deepep: ep = W
  double tp_attention_bytes = 0;  // --tp W, deepep: attention, dense MLPs, shared experts / W
};

// What MLA keeps besides the checkpoint for heads [head_begin, head_end) of every layer whose
// kv_b_proj is FP8 block-scaled: each head's W_uk transposed (MlaAttention), in FP8 with its
// block scales when the head's rows line up with the scale grid, else in F32. 0 otherwise.
double mla_absorb_copy_bytes(const ModelConfig& config, int64_t head_begin, int64_t head_end);

// Per-rank weight bytes with ep = W and `redundant` extra expert slots per layer.
RankMemory rank_memory(const ModelConfig& config, int world_size, int redundant);
// KV cache bytes one token takes on a rank (fp32 cache; MLA keeps the latent on every rank of an
// attention group).
double kv_bytes_per_token(const ModelConfig& config);

}  // namespace epserve
