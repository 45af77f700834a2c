// The weighted sum of a token's expert outputs, in top-k slot order. Every MoE path (one rank,
// expert-parallel dispatch in either mode) ends with this function, so a token's result is
// bit-identical whichever rank computed which expert.
#pragma once

#include <cstdint>

namespace epserve {

// out[t] = sum over k = 0..K-1 of weights[t, k] * y[t * K + k]  (rows of `hidden` floats);
// slots whose id is negative contribute nothing.
void combine_topk_outputs(const float* y, const float* weights, const int32_t* topk_ids,
                          int64_t num_tokens, int64_t top_k, int64_t hidden, float* out);

}  // namespace epserve
