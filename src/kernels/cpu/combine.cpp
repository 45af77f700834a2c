#include "kernels/cpu/combine.h"

#include <algorithm>

namespace epserve {

void combine_topk_outputs(const float* y, const float* weights, const int32_t* topk_ids,
                          int64_t num_tokens, int64_t top_k, int64_t hidden, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* o = out + t * hidden;
    std::fill(o, o + hidden, 0.0f);
    for (int64_t k = 0; k < top_k; ++k) {
      if (topk_ids[t * top_k + k] < 0) continue;
      float w = weights[t * top_k + k];
      const float* yk = y + (t * top_k + k) * hidden;
      for (int64_t d = 0; d < hidden; ++d) o[d] += w * yk[d];
    }
  }
}

}  // namespace epserve
