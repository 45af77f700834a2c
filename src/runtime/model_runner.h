// What the scheduler drives: one forward pass over a batch, returning the wanted logits. The
// single-process runner owns the model and its KV cache; the multi-rank runner also hands the
// batch to the other ranks of its group so they run the same step in lockstep.
#pragma once

#include <cstdint>
#include <memory>

#include "model/causal_lm.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"

namespace epserve {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // logits [batch.num_logit_rows(), vocab]
  virtual void forward(const ForwardBatch& batch, float* logits) = 0;
  virtual const ModelConfig& config() const = 0;
  virtual int64_t num_kv_slots() const = 0;
  virtual int64_t vocab_size() const { return config().vocab_size; }
  // One image through the model's vision tower (Qwen3-VL), on this rank alone: pixels
  // [t * h * w, patch_dim] -> out [tokens, config().vision.embed_width()].
  // Runners without a vision tower refuse.
  virtual void encode_image(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                            float* out);
};

// Runs the model in this process, with a KV cache of num_kv_slots token slots (its memory from
// `allocate_kv` when given, model/kv_cache.h). It either owns the model or borrows one that
// outlives it.
class LocalModelRunner : public ModelRunner {
 public:
  LocalModelRunner(std::unique_ptr<CausalLM> model, int64_t num_kv_slots);
  LocalModelRunner(CausalLM& model, int64_t num_kv_slots, const KvAllocator& allocate_kv = {});
  void forward(const ForwardBatch& batch, float* logits) override {
    model_.forward(batch, cache_, logits);
  }
  const ModelConfig& config() const override { return model_.config(); }
  int64_t num_kv_slots() const override { return cache_.num_slots(); }
  void encode_image(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                    float* out) override {
    model_.encode_image(grid_t, grid_h, grid_w, pixels, out);
  }
  CausalLM& model() { return model_; }
  const KvCache& cache() const { return cache_; }
  KvCache& cache() { return cache_; }

 private:
  std::unique_ptr<CausalLM> owned_;
  CausalLM& model_;
  KvCache cache_;
};

}  // namespace epserve
