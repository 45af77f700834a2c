// The vision tower's elementwise kernels (Qwen3-VL's ViT and patch mergers), in fp32 as
// PyTorch computes them: LayerNorm with a bias, GELU with the tanh approximation
// (gelu_pytorch_tanh, the ViT MLP), the exact erf GELU (nn.GELU, the patch mergers), the bias
// and residual additions. LayerNorm, GELU-tanh and the additions have AVX2 paths chosen at run
// time (cpu_has_avx2_fma()) beside their scalar *_reference definitions, and run over rows (or
// chunks) on the global thread pool; each vector path is tested against its reference.
#pragma once

#include <cstdint>

namespace epserve {

// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias over rows of dim; out may alias x.
// Mean and variance in double; the AVX2 path sums in another order (within an ulp of the mean
// and the scale) and then computes every output with the reference's fp32 operations.
void layernorm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t dim,
               double eps, float* out);
void layernorm_reference(const float* x, const float* weight, const float* bias, int64_t rows,
                         int64_t dim, double eps, float* out);
// x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), in place over n values. Uses AVX2
// when the CPU has it.
void gelu_tanh(float* x, int64_t n);
void gelu_tanh_reference(float* x, int64_t n);
// x * 0.5 * (1 + erf(x / sqrt(2))), in place over n values.
void gelu_erf(float* x, int64_t n);
// y[r] += bias over rows of dim.
void add_bias(float* y, const float* bias, int64_t rows, int64_t dim);
void add_bias_reference(float* y, const float* bias, int64_t rows, int64_t dim);
// x[r] += y[r] + bias over rows of dim (a linear layer's output y, its bias, onto the residual
// x): the same bits as add_bias(y) followed by x += y, without writing y.
void add_bias_residual(float* x, const float* y, const float* bias, int64_t rows, int64_t dim);
void add_bias_residual_reference(float* x, const float* y, const float* bias, int64_t rows,
                                 int64_t dim);

}  // namespace epserve
