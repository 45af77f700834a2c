// A decoder-only MoE language model: embedding, decoder layers (RMSNorm -> attention ->
// residual -> RMSNorm -> dense MLP or MoE -> residual), final norm and LM head. The architecture
// files (deepseek_v3.cpp, qwen3_moe.cpp) only choose and load the parts; this class runs them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/model_weights.h"
#include "model/attention.h"
#include "model/feed_forward.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"
#include "model/layers.h"
#include "model/moe.h"
#include "model/moe_context.h"
#include "model/parallel.h"
#include "model/tbo_scheduler.h"
#include "model/vision_qwen3_vl.h"

namespace epserve {

struct DecoderLayer {
  // Dense layers' MLP is split over the attention group like the heads (its output is partial).
  bool feed_forward_is_partial = false;
  RmsNorm input_norm;
  RmsNorm post_attention_norm;
  std::unique_ptr<Attention> attention;
  std::unique_ptr<FeedForward> feed_forward;
  MoeBlock* moe = nullptr;  // feed_forward when the layer is MoE
};

// Called by every rank around each forward pass, in the same order on all ranks (the
// expert-distribution recorder and live EPLB hook in here; on_pass_end may run collectives).
class PassObserver {
 public:
  virtual ~PassObserver() = default;
  virtual void on_pass_begin(const ForwardBatch& batch) = 0;
  virtual void on_pass_end() = 0;
};

class CausalLM {
 public:
  // moe: the runtime's MoE context (null: a fresh one, every expert local).
  CausalLM(ModelConfig config, ModelWeights weights, KvLayout kv_layout,
           ModelParallel parallel = {}, std::shared_ptr<MoeContext> moe = nullptr);

  const ModelConfig& config() const { return config_; }
  const KvLayout& kv_layout() const { return kv_layout_; }
  int64_t vocab_size() const { return config_.vocab_size; }
  std::vector<DecoderLayer>& layers() { return layers_; }
  const ModelWeights& weights() const { return weights_; }
  const ModelParallel& parallel() const { return parallel_; }
  MoeContext& moe_context() { return *moe_; }
  const MoeContext& moe_context() const { return *moe_; }
  const std::shared_ptr<MoeContext>& moe_context_ptr() const { return moe_; }

  // Runs the batch; logits [batch.num_logit_rows(), vocab] in sequence order.
  void forward(const ForwardBatch& batch, KvCache& cache, float* logits);
  void set_moe_observer(MoeObserver* observer);
  void set_pass_observer(PassObserver* observer) { pass_observer_ = observer; }
  // Called around each two-batch-overlap operation (op, micro-batch, begin?); for the trace.
  void set_tbo_op_observer(std::function<void(const TboOperation&, int, bool)> observer) {
    op_observer_ = std::move(observer);
  }
  // The expert slots of layer `layer` under expert parallelism; null for dense layers and when
  // every expert is local.
  ExpertSlots* expert_slots(int layer);

  // Qwen3-VL: a batch's image rows (ForwardBatch::image_rows) take the first hidden_size floats
  // of their image_embeds row as their input embedding, and after decoder layer l < the number
  // of DeepStack features, feature l is added to them.
  // One image through the vision tower: pixels [t * h * w, patch_dim] -> out [tokens, width].
  void encode_image(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                    float* out) const;

  // Set by the architecture builders.
  void set_layers(std::vector<DecoderLayer> layers) { layers_ = std::move(layers); }
  void set_vision(std::unique_ptr<VisionTower> vision) { vision_ = std::move(vision); }
  void load_embeddings_and_head();

 private:
  void forward_pass(const ForwardBatch& batch, KvCache& cache, float* logits);
  // Layer l's attention half on a batch whose rows start at hidden/normed/delta [T, H]:
  // norm, attention (KV written), head all-reduce, residual, post-attention norm into normed.
  void attention_block(size_t l, const ForwardBatch& batch, KvCache& cache, float* hidden,
                       float* normed, float* delta);
  // Layer l's feed-forward half on T rows: MLP or MoE into delta, reduce, residual.
  void feed_forward_block(size_t l, int64_t T, const float* normed, float* delta, float* hidden);
  // Two-batch overlap (model/tbo_split.h, model/tbo_scheduler.h; causal_lm_tbo.cpp): whether
  // this pass runs it, agreed by every rank of the world (extend: the agreed mode), and the
  // layers run as two micro-batches.
  bool agree_two_batch_overlap(const ForwardBatch& batch, bool& extend);
  // overlapped = false: the whole batch as one micro-batch (traced passes without overlap).
  void forward_layers_staged(const ForwardBatch& batch, KvCache& cache, bool extend,
                             bool overlapped, float* hidden, float* normed, float* delta);
  void embed(const ForwardBatch& batch, float* hidden) const;
  // Adds part `part` of the batch's image embeddings to its image rows (part 0 replaces them:
  // the vision tower's output is the input embedding of an image token).
  void add_image_embeds(const ForwardBatch& batch, int64_t part, float* hidden) const;
  // The number of DeepStack features (0 without a vision tower).
  int64_t num_deepstack() const;
  // The vocabulary rows [begin, end) of rank `rank` of `size` (vocab-parallel LM head).
  std::pair<int64_t, int64_t> vocab_share(int rank, int size) const;

  // Sums a tensor-parallel partial result over the attention group (no-op alone).
  void reduce_over_heads(float* data, int64_t count, const char* what, size_t layer);

  ModelConfig config_;
  ModelWeights weights_;
  KvLayout kv_layout_;
  ModelParallel parallel_;
  std::shared_ptr<MoeContext> moe_;
  Tensor embed_tokens_;  // [vocab, hidden], BF16/F32/F16 as stored
  std::vector<DecoderLayer> layers_;
  std::unique_ptr<VisionTower> vision_;
  RmsNorm final_norm_;
  Linear lm_head_;
  PassObserver* pass_observer_ = nullptr;
  // Sees every two-batch-overlap operation begin and end (the trace); may be empty.
  std::function<void(const TboOperation&, int, bool)> op_observer_;
};

// What a rank loads its model with besides the directory: how its share is cut, the MoE context
// the runtime made for it (null: a fresh one, every expert local; under expert parallelism it
// must hold the placement, and the dispatchers for deepep), and a progress callback.
struct ModelLoadOptions {
  ModelParallel parallel;
  std::shared_ptr<MoeContext> moe;
  // Called after each decoder layer is loaded (done, total), e.g. for a progress bar.
  std::function<void(int, int)> on_layer_loaded;
};

// Reads config.json, picks the architecture and loads the weights this rank needs.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir,
                                         const ModelLoadOptions& options = {});

// Architecture builders (one file each); options.moe is set.
std::unique_ptr<CausalLM> build_deepseek_v3(ModelConfig config, ModelWeights weights,
                                            const ModelLoadOptions& options);
std::unique_ptr<CausalLM> build_qwen3_moe(ModelConfig config, ModelWeights weights,
                                          const ModelLoadOptions& options);
std::unique_ptr<CausalLM> build_qwen3_vl_moe(ModelConfig config, ModelWeights weights,
                                             const ModelLoadOptions& options);

}  // namespace epserve
