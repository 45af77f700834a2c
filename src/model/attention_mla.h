// Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2) in the absorbed form: the cache holds one
// normalised latent row plus the rotated shared rope key per token; W_uk is folded into the
// query and W_uv applied to the attention-weighted latent. Heads may be sharded over ranks;
// every rank keeps the whole latent cache.
#pragma once

#include <string>
#include <vector>

#include "io/model_config.h"
#include "kernels/cpu/rope.h"
#include "model/attention.h"
#include "model/layers.h"

namespace epserve {

class MlaAttention : public Attention {
 public:
  MlaAttention(const ModelConfig& config, const ModelWeights& weights, const std::string& prefix,
               Shard heads);
  void forward(const float* x, const ForwardBatch& batch, KvCache& cache, int64_t layer,
               float* out) const override;

  static KvLayout kv_layout(const ModelConfig& config);

 private:
  MlaConfig mla_;
  int64_t hidden_size_;
  int64_t num_local_heads_;
  float scale_;
  RopeTable rope_;
  Linear q_a_proj_, q_b_proj_, q_proj_;  // q_proj when q_lora_rank is 0
  RmsNorm q_a_layernorm_;
  Linear kv_a_proj_;
  RmsNorm kv_a_layernorm_;
  Linear kv_b_proj_;  // this rank's heads: [local_heads * (nope + v), kv_lora]
  // A block-scaled kv_b_proj's W_uk per local head, transposed ([kv_lora, nope]) so that the
  // absorption is an ordinary (quantized) matmul: FP8 with the checkpoint's block scales when
  // they line up (DeepSeek-V3), else F32. Empty for BF16 kv_b_proj, which is used untransposed.
  std::vector<Linear> w_uk_t_;
  Linear o_proj_;  // this rank's head columns
};

}  // namespace epserve
