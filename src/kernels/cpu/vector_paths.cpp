#include "kernels/cpu/vector_paths.h"

#include "kernels/cpu/cpu_features.h"

namespace epserve {

bool cpu_has_avx2_fma() {
  return cpu_features().avx2_fma;
}

}  // namespace epserve
