// Which canonical order matmul gives BF16 weights in this process (and in the epserve processes
// it starts, which see the same CPU and EPSERVE_CPU_FEATURES): tests that compare parallel
// layouts or transformers' outputs use the BF16 order's tolerances where it is on.
#pragma once

#include <string>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve::testing {

// True on a CPU with AVX512-BF16 unless EPSERVE_CPU_FEATURES turns it off.
inline bool bf16_matmul_order() {
  return matmul_detail::canonical_path(DType::BF16) == matmul_detail::MatmulPath::kBf16Scalar;
}

// True where the model's matmuls round activations before their products: the BF16 order (BF16
// and FP8 weights on AVX512-BF16), or INT4 weights (`model` names an *int4* fixture) on a CPU
// with AVX512-VNNI or AVX-VNNI, where they take the INT4-A8 order (int8 activations,
// matmul_quant.h). Tests that compare layouts or transformers' outputs use the BF16 order's
// tolerances there.
inline bool activations_rounded(const std::string& model) {
  const CpuFeatures& f = cpu_features();
  return bf16_matmul_order() ||
         (model.find("int4") != std::string::npos && (f.avx512_vnni || f.avx_vnni));
}

}  // namespace epserve::testing
