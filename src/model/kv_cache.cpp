#include "model/kv_cache.h"

namespace epserve {

KvCache::KvCache(int64_t num_layers, int64_t num_slots, KvLayout layout)
    : num_slots_(num_slots), layout_(layout) {
  EPS_CHECK(num_slots > 0, "the KV cache needs at least one slot");
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
