// The feed-forward part of a decoder layer: a dense gated MLP or a mixture of experts.
#pragma once

#include <cstdint>

namespace epserve {

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // x [T, hidden] (already normalised) -> out [T, hidden].
  virtual void forward(const float* x, int64_t num_tokens, float* out) = 0;
};

}  // namespace epserve
