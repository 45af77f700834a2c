#include "kernels/cpu/activation.h"

#include <cmath>

#include "kernels/cpu/vector_paths.h"

namespace epserve {

void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  if (cpu_has_avx2_fma()) {
    silu_mul_avx2(gate, up, n, out);
  } else {
    silu_mul_reference(gate, up, n, out);
  }
}

}  // namespace epserve
