// Rotary position embeddings: plain RoPE and YaRN (as DeepSeek-V3 uses), in the two layouts the
// target models store: rotate-half (Qwen3: pairs (i, i + d/2)) and interleaved (DeepSeek-V3:
// pairs (2i, 2i + 1)). Like transformers, the interleaved variant writes its output
// de-interleaved (first the rotated x's, then the rotated y's); queries and keys get the same
// permutation, so dot products are unchanged.
#pragma once

#include <cstdint>
#include <vector>

#include "io/model_config.h"

namespace epserve {

struct RopeTable {
  int rotary_dim = 0;
  bool interleave = false;
  float attention_factor = 1.0f;  // YaRN scales cos and sin by this
  std::vector<float> inv_freq;    // [rotary_dim / 2]
};

RopeTable make_rope_table(const RopeConfig& config, int rotary_dim);

// Softmax scale multiplier DeepSeek applies for YaRN: mscale(factor, mscale_all_dim)^2, else 1.
double yarn_softmax_scale_multiplier(const RopeConfig& config);

// Rotates x[num_heads, rotary_dim] (rows head_stride apart) in place for one position.
void apply_rope(const RopeTable& table, int64_t position, float* x, int64_t num_heads,
                int64_t head_stride);

}  // namespace epserve
