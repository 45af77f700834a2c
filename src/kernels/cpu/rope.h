// Rotary position embeddings: plain RoPE and YaRN (as DeepSeek-V3 uses), in the two layouts the
// target models store: rotate-half (Qwen3: pairs (i, i + d/2)) and interleaved (DeepSeek-V3:
// pairs (2i, 2i + 1)). Like transformers, the interleaved variant writes its output
// de-interleaved (first the rotated x's, then the rotated y's); queries and keys get the same
// permutation, so dot products are unchanged.
#pragma once

#include <cstdint>
#include <vector>

namespace epserve {

// The rotary embedding's parameters, as config.json's rope fields give them (the model fills
// this from its RopeConfig). yarn = false is plain RoPE with base theta.
struct RopeParams {
  double theta = 10000.0;
  bool yarn = false;
  double factor = 1.0;
  int original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;            // 0: absent
  double mscale_all_dim = 0.0;    // 0: absent
  double attention_factor = 0.0;  // 0: derived from factor and the mscales
  bool truncate = true;
  bool interleave = false;  // pairs (2i, 2i + 1) instead of (i, i + d/2)
};

struct RopeTable {
  int rotary_dim = 0;
  bool interleave = false;
  float attention_factor = 1.0f;  // YaRN scales cos and sin by this
  std::vector<float> inv_freq;    // [rotary_dim / 2]
};

RopeTable make_rope_table(const RopeParams& params, int rotary_dim);

// Softmax scale multiplier DeepSeek applies for YaRN: mscale(factor, mscale_all_dim)^2, else 1.
double yarn_softmax_scale_multiplier(const RopeParams& params);

// Rotates x[num_heads, rotary_dim] (rows head_stride apart) in place for one position.
void apply_rope(const RopeTable& table, int64_t position, float* x, int64_t num_heads,
                int64_t head_stride);

// Rotate-half rotary with one angle per frequency (angle[i] for the pair (i, i + half)), for
// rotaries whose frequencies read different positions: Qwen3-VL's interleaved MRoPE and its
// ViT's 2-D (h, w) rotary. x[num_heads, 2 * half], rows head_stride apart, in place.
void apply_rope_angles(const float* angle, int half, float* x, int64_t num_heads,
                       int64_t head_stride);
// Interleaved MRoPE's angles: frequency i takes position t, h or w as section says
// (h when i % 3 == 1 and i < 3 * section[1], w when i % 3 == 2 and i < 3 * section[2], else t),
// angle[i] = position * inv_freq[i] in fp32, as transformers' Qwen3-VL text rotary.
void mrope_interleaved_angles(const RopeTable& table, const int32_t* thw, const int* section,
                              float* angle);

}  // namespace epserve
