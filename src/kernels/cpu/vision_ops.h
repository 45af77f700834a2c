// The vision tower's elementwise kernels (Qwen3-VL's ViT and patch mergers), in fp32 as
// PyTorch computes them: LayerNorm with a bias, GELU with the tanh approximation
// (gelu_pytorch_tanh, the ViT MLP) and the exact erf GELU (nn.GELU, the patch mergers). Each is
// its own scalar definition; the vision tower is a small part of a request's time (bench).
#pragma once

#include <cstdint>

namespace epserve {

// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias over rows of dim; out may alias x.
void layernorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out);
// x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), in place over n values.
void gelu_tanh(float* x, int64_t n);
// x * 0.5 * (1 + erf(x / sqrt(2))), in place over n values.
void gelu_erf(float* x, int64_t n);
// y[r] += bias over rows of dim.
void add_bias(float* y, const float* bias, int64_t rows, int64_t dim);

}  // namespace epserve
