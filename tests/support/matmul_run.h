// What the matmul kernel tests share: random inputs and one call of a chosen matmul path.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

namespace epserve::testing {

// n values uniform in [-1, 1).
inline std::vector<float> random_vector(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(rng);
  return v;
}

// y = x . W^T on `path`; y starts at -1 so that an output the path leaves unwritten shows.
inline std::vector<float> run_matmul(const std::vector<float>& x, int64_t num_tokens,
                                     const WeightView& w, matmul_detail::MatmulPath path) {
  std::vector<float> y(static_cast<size_t>(num_tokens * w.rows), -1.0f);
  matmul_detail::matmul_with_path(x.data(), num_tokens, w, y.data(), path);
  return y;
}

}  // namespace epserve::testing
