#include "model/memory_plan.h"

#include <cmath>

#include "model/kv_cache.h"
#include "model/tensor_specs.h"

namespace epserve {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Bytes of matrix `name` [rows, cols] as the checkpoint's format stores it (the loader's rule:
// FP8 for every linear layer but the router, embeddings and lm_head; INT4 for the linear layers
// compressed-tensors does not ignore).
double matrix_bytes(const QuantConfig& q, const std::string& name, double rows, double cols) {
  const bool linear = ends_with(name, "_proj.weight") || ends_with(name, "_with_mqa.weight");
  if (q.method == QuantMethod::kFp8Block && linear) {
    const double br = std::ceil(rows / q.block_rows), bc = std::ceil(cols / q.block_cols);
    return rows * cols + 4 * br * bc;
  }
  if (q.method == QuantMethod::kInt4Pack && linear &&
      !q.is_ignored(name.substr(0, name.size() - 7))) {
    return rows * std::ceil(cols / 8) * 4 + rows * std::ceil(cols / q.group_size) * 2 + 8;
  }
  return rows * cols * 2;  // BF16
}

}  // namespace

WeightBytes checkpoint_weight_bytes(const ModelConfig& config) {
  WeightBytes b;
  for (const TensorSpec& spec : model_tensor_specs(config)) {
    double bytes = 0;
    if (spec.role == TensorRole::kMatrix) {
      bytes = matrix_bytes(config.quant, spec.name, static_cast<double>(spec.shape[0]),
                           static_cast<double>(spec.shape[1]));
    } else {
      bytes = static_cast<double>(shape_numel(spec.shape)) *
              (spec.role == TensorRole::kRouterBias ? 4.0 : 2.0);
    }
    const bool routed = spec.name.find(".mlp.experts.") != std::string::npos;
    const bool replicated = spec.role != TensorRole::kMatrix ||
                            ends_with(spec.name, "mlp.gate.weight") ||
                            spec.name == "lm_head.weight";
    (routed ? b.routed_experts : replicated ? b.replicated : b.sharded) += bytes;
  }
  return b;
}

RankMemory rank_memory(const ModelConfig& config, int world_size, int redundant) {
  const WeightBytes b = checkpoint_weight_bytes(config);
  const int experts = config.moe.num_experts;
  const double slot_share =
      experts > 0 ? static_cast<double>(experts + redundant) / experts / world_size : 0.0;
  RankMemory m;
  m.world_size = world_size;
  // MLA absorbs W_uk from an F32 copy of a block-scaled kv_b_proj (attention_mla.cpp), split
  // like the heads.
  double absorb_copy = 0;
  if (config.is_mla() && config.quant.method == QuantMethod::kFp8Block) {
    absorb_copy = static_cast<double>(config.num_heads) *
                  (config.mla.qk_nope_head_dim + config.mla.v_head_dim) * config.mla.kv_lora_rank *
                  4.0 * config.num_layers;
  }
  m.dp_attention_bytes = b.replicated + b.sharded + absorb_copy + b.routed_experts * slot_share;
  m.tp_attention_bytes =
      b.replicated + (b.sharded + absorb_copy) / world_size + b.routed_experts * slot_share;
  return m;
}

double kv_bytes_per_token(const ModelConfig& config) {
  const int64_t width = config.is_mla()
                            ? config.mla.kv_lora_rank + config.mla.qk_rope_head_dim
                            : 2 * static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  return static_cast<double>(width) * 4.0 * config.num_layers;
}

}  // namespace epserve
