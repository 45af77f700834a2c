// MoE routing: from router logits to each token's top-k expert ids and weights.
//  - softmax scoring (Qwen3-MoE): probabilities = softmax(logits), top-k, optionally
//    renormalised to sum 1.
//  - sigmoid scoring (DeepSeek-V3, Kimi-K2): scores = sigmoid(logits); the correction bias is
//    added for choosing only; experts are grouped (n_group), the topk_group groups with the
//    largest sum of their two best biased scores are kept, the top-k experts among them are
//    chosen; weights are the unbiased scores, renormalised (+1e-20) when norm_topk_prob, times
//    routed_scaling_factor.
// Ids come out in descending order of the score used for choosing (ties: lower id first).
#pragma once

#include <cstdint>

namespace epserve {

struct RoutingParams {
  bool sigmoid = false;  // sigmoid scoring (DeepSeek-V3) instead of softmax (Qwen3-MoE)
  int num_experts = 0;
  int top_k = 0;
  int n_group = 1;
  int topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  const float* correction_bias = nullptr;  // [num_experts] or null
};

// logits [num_tokens, num_experts] -> topk_ids, topk_weights [num_tokens, top_k].
void route_topk(const RoutingParams& params, const float* logits, int64_t num_tokens,
                int32_t* topk_ids, float* topk_weights);

}  // namespace epserve
