#include "kernels/cpu/vector_paths.h"

#include "kernels/cpu/cpu_features.h"

namespace epserve {

bool cpu_has_avx2_fma() {
  return cpu_features().avx2_fma;
}

bool cpu_has_avx512() {
  return cpu_features().avx512;
}

}  // namespace epserve
