// The KV cache: for every layer, a pool of token slots holding fp32 rows. A GQA layer stores a
// key row and a value row per slot ([kv_heads, head_dim] each); an MLA layer stores one latent
// row per slot (kv_lora_rank + rope dim) and no value row. Which slots a sequence owns is the
// runtime's business (pages of slots); the model only reads and writes the slots it is given.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace epserve {

struct KvLayout {
  int64_t k_width = 0;  // floats per slot per layer
  int64_t v_width = 0;  // 0 for MLA
  int64_t floats_per_slot() const { return k_width + v_width; }
};

class KvCache {
 public:
  KvCache(int64_t num_layers, int64_t num_slots, KvLayout layout);

  float* k(int64_t layer) { return k_[layer].f32(); }
  float* v(int64_t layer) { return layout_.v_width ? v_[layer].f32() : nullptr; }
  int64_t num_slots() const { return num_slots_; }
  const KvLayout& layout() const { return layout_; }
  // Bytes held for all layers.
  size_t bytes() const;
  // Bytes one token slot takes over all layers.
  static size_t bytes_per_slot(int64_t num_layers, const KvLayout& layout);

 private:
  int64_t num_slots_;
  KvLayout layout_;
  std::vector<Tensor> k_;
  std::vector<Tensor> v_;
};

}  // namespace epserve
