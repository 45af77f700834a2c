#include "kernels/cpu/vector_paths.h"

#include "kernels/cpu/cpu_features.h"

namespace epserve {

bool cpu_has_avx2_fma() {
  return cpu_features().avx2_fma;
}

bool cpu_has_avx512() {
  static const bool available = cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
                                __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl") &&
                                __builtin_cpu_supports("avx512dq");
  return available;
}

}  // namespace epserve
