// Grouped-query attention with per-head q/k RMSNorm before the rotary embedding (Qwen3 and
// Qwen3-MoE). Heads may be sharded over ranks: a rank keeps its query heads and the kv heads
// they read (split when there are at least as many kv heads as ranks, else replicated).
#pragma once

#include <string>
#include <vector>

#include "io/model_config.h"
#include "kernels/cpu/rope.h"
#include "model/attention.h"
#include "model/layers.h"

namespace epserve {

class GqaAttention : public Attention {
 public:
  GqaAttention(const ModelConfig& config, const ModelWeights& weights, const std::string& prefix,
               Shard heads);
  void forward(const float* x, const ForwardBatch& batch, KvCache& cache, int64_t layer,
               float* out) const override;

  // The cache row widths of one rank when heads are split over `tp_size` ranks.
  static KvLayout kv_layout(const ModelConfig& config, int tp_size);

 private:
  int64_t head_dim_;
  int64_t num_local_heads_;
  int64_t num_local_kv_heads_;
  float scale_;
  RopeTable rope_;
  std::vector<int> mrope_section_;  // Qwen3-VL's interleaved MRoPE; empty: 1-D rotary
  Linear q_proj_, k_proj_, v_proj_, o_proj_;
  RmsNorm q_norm_, k_norm_;
};

}  // namespace epserve
