// The gated MLP activation: out = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
#pragma once

#include <cstdint>

namespace epserve {

// Elementwise over n values; out may alias gate or up.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

}  // namespace epserve
