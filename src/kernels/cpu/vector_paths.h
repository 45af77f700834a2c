// AVX2 + FMA versions of the elementwise and per-row kernels (files *_avx2.cpp), declared for
// the dispatchers in activation.cpp / norm.cpp and for the tests that compare them with the
// scalar definitions. Call them only when cpu_has_avx2_fma() is true.
#pragma once

#include <cstdint>

namespace epserve {

// AVX2 and FMA, as cpu_features() reports them (EPSERVE_CPU_FEATURES can turn them off).
bool cpu_has_avx2_fma();
// AVX-512 F, BW, VL and DQ (and AVX2 + FMA), as cpu_features() reports them: the *_avx512.cpp
// paths.
bool cpu_has_avx512();

void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out);
void gelu_tanh_avx2(float* x, int64_t n);

// One row of the vision tower's LayerNorm (vision_ops.h), and rows of its bias additions.
void layernorm_row_avx2(const float* x, const float* weight, const float* bias, int64_t dim,
                        double eps, float* out);
void add_bias_rows_avx2(float* y, const float* bias, int64_t rows, int64_t dim);
void add_bias_residual_rows_avx2(float* x, const float* y, const float* bias, int64_t rows,
                                 int64_t dim);

// One row of rmsnorm: the sum of squares in double, then y = weight * (x * inv_rms) in fp32.
void rmsnorm_row_avx2(const float* x, const float* weight, int64_t dim, double eps, float* out);

}  // namespace epserve
