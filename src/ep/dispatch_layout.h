// Dispatch layout (DeepEP's get_dispatch_layout): from the router's top-k physical expert ids,
// how many tokens go to each rank and each expert, and which ranks each token visits.
// Physical expert (slot) e lives on rank e / (num_physical_experts / num_ranks), at local index
// e % (num_physical_experts / num_ranks). An id of -1 means "no expert" for that top-k slot.
#pragma once

#include <cstdint>
#include <vector>

namespace epserve {

struct DispatchLayout {
  int64_t num_tokens = 0;
  int num_topk = 0;
  int num_ranks = 0;
  int num_experts = 0;
  std::vector<int64_t> num_tokens_per_rank;    // [num_ranks] tokens with >= 1 expert on the rank
  std::vector<int64_t> num_tokens_per_expert;  // [num_experts] (token, slot) pairs per expert
  std::vector<uint8_t> is_token_in_rank;       // [num_tokens, num_ranks]

  bool in_rank(int64_t token, int rank) const {
    return is_token_in_rank[token * num_ranks + rank] != 0;
  }
};

// topk_idx: [num_tokens, num_topk] physical expert ids in [-1, num_physical_experts).
// num_physical_experts must be a multiple of num_ranks.
DispatchLayout get_dispatch_layout(const int32_t* topk_idx, int64_t num_tokens, int num_topk,
                                   int num_physical_experts, int num_ranks);

// Checks that every id is in [-1, num_physical_experts); the error names the token and slot.
void check_topk_idx(const int32_t* topk_idx, int64_t num_tokens, int num_topk,
                    int num_physical_experts);

}  // namespace epserve
