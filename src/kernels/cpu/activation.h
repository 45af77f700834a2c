// The gated MLP activation: out = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
#pragma once

#include <cstdint>

namespace epserve {

// Elementwise over n values; out may alias gate or up. Uses AVX2 when the CPU has it.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// The scalar definition (std::exp) the vector path is tested against.
void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out);

}  // namespace epserve
