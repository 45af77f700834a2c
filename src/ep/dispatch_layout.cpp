#include "ep/dispatch_layout.h"

#include "core/error.h"

namespace epserve {

void check_topk_idx(const int32_t* topk_idx, int64_t num_tokens, int num_topk,
                    int num_physical_experts) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int k = 0; k < num_topk; ++k) {
      int32_t e = topk_idx[t * num_topk + k];
      EPS_CHECK(e >= -1 && e < num_physical_experts,
                "topk_idx[{}, {}] = {} is not a physical expert id in [-1, {})", t, k, e,
                num_physical_experts);
    }
  }
}

DispatchLayout get_dispatch_layout(const int32_t* topk_idx, int64_t num_tokens, int num_topk,
                                   int num_physical_experts, int num_ranks) {
  EPS_CHECK(
      num_ranks >= 1 && num_physical_experts >= num_ranks && num_physical_experts % num_ranks == 0,
      "{} physical experts cannot be spread evenly over {} ranks", num_physical_experts, num_ranks);
  EPS_CHECK(num_tokens == 0 || (topk_idx && num_topk > 0),
            "dispatch layout needs topk_idx [{}, k] with k >= 1", num_tokens);
  check_topk_idx(topk_idx, num_tokens, num_topk, num_physical_experts);
  const int per_rank = num_physical_experts / num_ranks;
  DispatchLayout layout;
  layout.num_tokens = num_tokens;
  layout.num_topk = num_topk;
  layout.num_ranks = num_ranks;
  layout.num_experts = num_physical_experts;
  layout.num_tokens_per_rank.assign(num_ranks, 0);
  layout.num_tokens_per_expert.assign(num_physical_experts, 0);
  layout.is_token_in_rank.assign(num_tokens * num_ranks, 0);
  for (int64_t t = 0; t < num_tokens; ++t) {
    uint8_t* in_rank = &layout.is_token_in_rank[t * num_ranks];
    for (int k = 0; k < num_topk; ++k) {
      int32_t e = topk_idx[t * num_topk + k];
      if (e < 0) continue;
      ++layout.num_tokens_per_expert[e];
      in_rank[e / per_rank] = 1;
    }
    for (int r = 0; r < num_ranks; ++r) layout.num_tokens_per_rank[r] += in_rank[r];
  }
  return layout;
}

}  // namespace epserve
