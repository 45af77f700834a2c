#include "kernels/cpu/vector_paths.h"

namespace epserve {

bool cpu_has_avx2_fma() {
  static const bool available = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return available;
}

}  // namespace epserve
