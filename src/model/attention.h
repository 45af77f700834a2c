// The attention interface the decoder layers use. An implementation owns its weights (or its
// heads' share of them under tensor parallelism) and reads and writes its layer of the KV cache.
#pragma once

#include <cstdint>

#include "model/forward_batch.h"
#include "model/kv_cache.h"

namespace epserve {

class Attention {
 public:
  virtual ~Attention() = default;
  // x [T, hidden] (already normalised) -> out [T, hidden]. With heads sharded over ranks the
  // output is this rank's partial sum; the caller reduces it over the attention group.
  virtual void forward(const float* x, const ForwardBatch& batch, KvCache& cache, int64_t layer,
                       float* out) const = 0;
};

}  // namespace epserve
