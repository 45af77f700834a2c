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

double mla_absorb_copy_bytes(const ModelConfig& config, int64_t head_begin, int64_t head_end) {
  if (!config.is_mla() || config.quant.method != QuantMethod::kFp8Block) return 0;
  const int64_t nope = config.mla.qk_nope_head_dim, lora = config.mla.kv_lora_rank;
  const int64_t nope_v = nope + config.mla.v_head_dim;
  const int64_t br = config.quant.block_rows, bc = config.quant.block_cols;
  double per_layer = 0;
  for (int64_t h = head_begin; h < head_end; ++h) {
    const int64_t r0 = h * nope_v;  // as Linear::transposed_rows decides
    const bool fp8 = r0 % br == 0 || r0 / br == (r0 + nope - 1) / br;
    per_layer += fp8 ? static_cast<double>(lora * nope) +
                           4.0 * ((lora + bc - 1) / bc) * ((nope + br - 1) / br)
                     : 4.0 * lora * nope;
  }
  double total = 0;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    const std::string name = "model.layers." + std::to_string(layer) + ".self_attn.kv_b_proj";
    if (!config.quant.is_ignored(name)) total += per_layer;
  }
  return total;
}

RankMemory rank_memory(const ModelConfig& config, int world_size, int redundant) {
  const WeightBytes b = checkpoint_weight_bytes(config);
  const int experts = config.moe.num_experts;
  const double slot_share =
      experts > 0 ? static_cast<double>(experts + redundant) / experts / world_size : 0.0;
  RankMemory m;
  m.world_size = world_size;
  // MLA's transposed W_uk of a block-scaled kv_b_proj, split like the heads.
  const double absorb_copy = mla_absorb_copy_bytes(config, 0, config.num_heads);
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
