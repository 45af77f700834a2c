// Qwen3-VL's vision tower (transformers' Qwen3VLMoeVisionModel): the Conv3d patch embedding as a
// matmul over the processor's patch rows, learned position embeddings resampled bilinearly to
// the image's grid, ViT blocks (LayerNorm, full attention per frame with the 2-D (h, w) rotary,
// GELU-tanh MLP), the 2x2 patch merger, and the DeepStack mergers of the listed blocks. One
// image in, one row per image token out: the merger's output, then each DeepStack feature.
#pragma once

#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/model_weights.h"
#include "model/layers.h"

namespace epserve {

// A linear layer with a bias, y = x W^T + b.
struct BiasedLinear {
  Linear linear;
  std::vector<float> bias;
  static BiasedLinear load(const ModelWeights& weights, const std::string& prefix,
                           int64_t out_features, int64_t in_features);
  void forward(const float* x, int64_t rows, float* y) const;
};

struct LayerNorm {
  std::vector<float> weight, bias;
  double eps = 1e-6;
  static LayerNorm load(const ModelWeights& weights, const std::string& prefix, int64_t dim);
  void forward(const float* x, int64_t rows, float* out) const;
};

class VisionTower {
 public:
  static VisionTower load(const ModelConfig& config, const ModelWeights& weights,
                          const std::string& prefix);
  // Floats per output row: out_hidden_size * (1 + number of DeepStack features).
  int64_t embed_width() const;
  // pixels [grid_t * grid_h * grid_w, patch_dim] in the processor's order (merge windows of
  // merge^2 patches) -> out [grid_t * grid_h * grid_w / merge^2, embed_width()].
  void forward(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
               float* out) const;

 private:
  struct Block {
    LayerNorm norm1, norm2;
    BiasedLinear qkv, proj, fc1, fc2;
  };
  struct Merger {
    bool postshuffle_norm = false;
    LayerNorm norm;
    BiasedLinear fc1, fc2;
    // x [N, hidden] -> out [N / merge^2, out_hidden], row stride out_stride.
    void forward(const float* x, int64_t rows, int64_t hidden, int64_t unit, float* out,
                 int64_t out_stride) const;
  };
  // Position embeddings interpolated to the grid, in the pixel rows' order: [N, hidden].
  void add_position_embeddings(int64_t t, int64_t h, int64_t w, float* x) const;
  // The block's attention up to its output projection, without that projection's bias:
  // normed [N, hidden] -> out [N, hidden], through the scratch qkv [N, 3 * hidden] and attn
  // [N, hidden].
  void attention(const Block& b, int64_t t, int64_t h, int64_t w, const std::vector<float>& angles,
                 const float* normed, float* qkv, float* attn, float* out) const;

  VisionConfig vc_;
  int64_t hidden_ = 0;
  int64_t head_dim_ = 0;
  int64_t side_ = 0;  // the learned position grid is side x side
  BiasedLinear patch_embed_;
  std::vector<float> pos_embed_;  // [side * side, hidden]
  std::vector<float> inv_freq_;   // [head_dim / 4]
  std::vector<Block> blocks_;
  Merger merger_;
  std::vector<Merger> deepstack_;  // in deepstack_visual_indexes order
};

// Row and column of patch i of a frame (h x w patches) when rows come in merge windows, as the
// image processor orders them.
std::pair<int64_t, int64_t> vision_patch_row_col(int64_t i, int64_t w, int64_t merge);

}  // namespace epserve
