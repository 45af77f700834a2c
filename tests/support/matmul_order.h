// Which canonical order matmul gives BF16 weights in this process (and in the epserve processes
// it starts, which see the same CPU and EPSERVE_CPU_FEATURES): tests that compare parallel
// layouts or transformers' outputs use the BF16 order's tolerances where it is on.
#pragma once

#include "kernels/cpu/matmul_internal.h"

namespace epserve::testing {

// True on a CPU with AVX512-BF16 unless EPSERVE_CPU_FEATURES turns it off.
inline bool bf16_matmul_order() {
  return matmul_detail::canonical_path(DType::BF16) == matmul_detail::MatmulPath::kBf16Scalar;
}

}  // namespace epserve::testing
