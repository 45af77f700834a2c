#include "model/kv_cache.h"

namespace epserve {

KvCache::KvCache(int64_t num_layers, int64_t num_slots, KvLayout layout,
                 const KvAllocator& allocate)
    : num_slots_(num_slots), layout_(layout) {
  EPS_CHECK(num_slots > 0, "the KV cache needs at least one slot");
  if (allocate) {
    constexpr size_t kAlign = 4096;
    auto rounded = [](int64_t floats) {
      return (static_cast<size_t>(floats) * sizeof(float) + kAlign - 1) / kAlign * kAlign;
    };
    const size_t k_bytes = rounded(num_slots * layout.k_width);
    const size_t v_bytes = layout.v_width ? rounded(num_slots * layout.v_width) : 0;
    const size_t total = static_cast<size_t>(num_layers) * (k_bytes + v_bytes);
    KvStorage block = allocate(total);
    if (block.data != nullptr) {
      EPS_CHECK(reinterpret_cast<uintptr_t>(block.data) % 64 == 0,
                "the KV cache's memory at {} is not 64-byte aligned", block.data);
      char* at = static_cast<char*>(block.data);
      for (int64_t l = 0; l < num_layers; ++l) {
        k_.emplace_back(DType::F32, Shape{num_slots, layout.k_width}, at, block.owner);
        at += k_bytes;
        if (layout.v_width) {
          v_.emplace_back(DType::F32, Shape{num_slots, layout.v_width}, at, block.owner);
          at += v_bytes;
        }
      }
      external_ = true;
      return;
    }
  }
  for (int64_t l = 0; l < num_layers; ++l) {
    k_.push_back(Tensor::empty(DType::F32, {num_slots, layout.k_width}));
    if (layout.v_width) v_.push_back(Tensor::empty(DType::F32, {num_slots, layout.v_width}));
  }
}

size_t KvCache::bytes() const {
  return bytes_per_slot(static_cast<int64_t>(k_.size()), layout_) * num_slots_;
}

size_t KvCache::bytes_per_slot(int64_t num_layers, const KvLayout& layout) {
  return static_cast<size_t>(num_layers * layout.floats_per_slot()) * sizeof(float);
}

}  // namespace epserve
