// The KV cache: for every layer, a pool of token slots holding fp32 rows. A GQA layer stores a
// key row and a value row per slot ([kv_heads, head_dim] each); an MLA layer stores one latent
// row per slot (kv_lora_rank + rope dim) and no value row. Which slots a sequence owns is the
// runtime's business (pages of slots); the model only reads and writes the slots it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace epserve {

struct KvLayout {
  int64_t k_width = 0;  // floats per slot per layer
  int64_t v_width = 0;  // 0 for MLA
  int64_t floats_per_slot() const { return k_width + v_width; }
};

// Memory for a whole cache from elsewhere than the heap (PD disaggregation's decode side takes it
// from UCX, so that the prefill side can write into it directly): `bytes` zero-filled bytes,
// 64-byte aligned, alive as long as `owner`. `data` null: there is none (the cache allocates its
// own, as without an allocator).
struct KvStorage {
  void* data = nullptr;
  std::shared_ptr<void> owner;
};
using KvAllocator = std::function<KvStorage(size_t bytes)>;

class KvCache {
 public:
  // Each layer's K and V pool is a zero-filled tensor, page aligned when 1 MiB or larger and
  // 64-byte aligned otherwise. With `allocate`, all of them are views into one block from it
  // (each starting on a 4 KiB boundary), as long as it returns one.
  KvCache(int64_t num_layers, int64_t num_slots, KvLayout layout, const KvAllocator& allocate = {});

  float* k(int64_t layer) { return k_[layer].f32(); }
  float* v(int64_t layer) { return layout_.v_width ? v_[layer].f32() : nullptr; }
  int64_t num_slots() const { return num_slots_; }
  const KvLayout& layout() const { return layout_; }
  // Bytes held for all layers.
  size_t bytes() const;
  // Bytes one token slot takes over all layers.
  static size_t bytes_per_slot(int64_t num_layers, const KvLayout& layout);
  // Whether the pools are views into an allocator's block.
  bool external() const { return external_; }

 private:
  int64_t num_slots_;
  KvLayout layout_;
  std::vector<Tensor> k_;
  std::vector<Tensor> v_;
  bool external_ = false;
};

}  // namespace epserve
