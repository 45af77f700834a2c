// Building blocks the model files compose: linear layers over mmapped weights (optionally a
// tensor-parallel shard: a range of output rows or input columns), RMSNorm, and the gated MLP
// (dense layers, shared experts and routed experts all use it).
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/model_config.h"
#include "io/model_weights.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/routing.h"

namespace epserve {

// The kernels' parameters from the model's config.
RopeParams rope_params(const RopeConfig& config);
RoutingParams routing_params(const MoeConfig& moe, const float* correction_bias);

// A contiguous part of [0, n) for one of `size` ranks.
struct Shard {
  int rank = 0;
  int size = 1;
  int64_t begin(int64_t n) const { return n / size * rank; }
  int64_t end(int64_t n) const { return n / size * (rank + 1); }
  int64_t length(int64_t n) const { return n / size; }
};

class Linear {
 public:
  Linear() = default;
  // The whole weight [out_features, in_features] named `name` (ending in ".weight"). A block-scaled
  // checkpoint's weight stays quantized: FP8 when `name` is float8_e4m3fn with a sibling
  // `name`_scale_inv, INT4 when `prefix`.weight_packed exists (with weight_scale, weight_shape).
  static Linear load(const ModelWeights& weights, const std::string& name, int64_t out_features,
                     int64_t in_features);
  // A 2-D BF16 or F32 tensor [out_features, in_features] (e.g. weights copied from another rank).
  static Linear of(Tensor weight);
  // Weights of the same format and shape as `like` over new buffers (EPLB's migrated experts):
  // `values` holds the quantized values, `scales` the scales (undefined for BF16/F32).
  static Linear of(const WeightView& like, Tensor values, Tensor scales);
  // The bytes that hold this layer's whole matrix: values, then scales (empty for BF16/F32).
  // Only for a whole (unsliced) weight.
  std::pair<std::span<const uint8_t>, std::span<const uint8_t>> stored_bytes() const;
  // This layer with BF16/F32 weights as they are, block-scaled ones as an owned F32 copy of their
  // dequantised values.
  Linear dequantized() const;
  // Rows [begin, end) of a block-scaled weight as the transposed matrix [in_features,
  // end - begin]: FP8 codes and their block scales moved, not requantised, when the rows'
  // scale blocks line up with a transposed grid (rows starting on a block boundary, or all in
  // one block row: DeepSeek-V3's per-head W_uk), else an owned F32 copy of the dequantised values.
  // Either way element (c, r) is exactly this layer's value (begin + r, c).
  Linear transposed_rows(int64_t begin, int64_t end) const;
  // Only output rows [begin, end) or input columns [begin, end).
  Linear rows(int64_t begin, int64_t end) const;
  Linear cols(int64_t begin, int64_t end) const;

  int64_t out_features() const { return view_.rows; }
  int64_t in_features() const { return view_.cols; }
  const WeightView& view() const { return view_; }
  // y[T, out] = x[T, in] · W^T
  void forward(const float* x, int64_t num_tokens, float* y) const {
    matmul(x, num_tokens, view_, y);
  }
  // The same in fp32 whatever the CPU (matmul_fp32_order): for the MoE router.
  void forward_fp32(const float* x, int64_t num_tokens, float* y) const {
    matmul_fp32_order(x, num_tokens, view_, y);
  }

 private:
  Tensor storage_;        // keeps the mapped bytes alive
  Tensor scale_storage_;  // block-scaled formats: the scales
  WeightView view_;
};

class RmsNorm {
 public:
  RmsNorm() = default;
  static RmsNorm load(const ModelWeights& weights, const std::string& name, int64_t dim,
                      double eps);
  int64_t dim() const { return weight_.numel(); }
  void forward(const float* x, int64_t rows, float* out) const;
  // Rows `stride` floats apart (normalising one part of wider rows, or per-head norms).
  void forward_strided(const float* x, int64_t x_stride, int64_t rows, float* out,
                       int64_t out_stride) const;

 private:
  Tensor weight_;  // F32 [dim]
  double eps_ = 1e-6;
};

// down(silu(gate(x)) * up(x)). With a shard, gate/up keep a range of intermediate rows and down
// the matching columns, so the output is a partial sum to be reduced across the shard's ranks.
// Scratch of a gated MLP: gate and up projections [T, intermediate].
struct MlpScratch {
  std::vector<float> gate;
  std::vector<float> up;
};

class GatedMlp {
 public:
  GatedMlp() = default;
  static GatedMlp load(const ModelWeights& weights, const std::string& prefix, int64_t hidden_size,
                       int64_t intermediate_size, Shard shard = {});
  static GatedMlp of(Linear gate, Linear up, Linear down);
  const Linear& gate_proj() const { return gate_; }
  const Linear& up_proj() const { return up_; }
  const Linear& down_proj() const { return down_; }
  int64_t hidden_size() const { return down_.out_features(); }
  int64_t intermediate_size() const { return gate_.out_features(); }
  // x [T, hidden] -> out [T, hidden]
  void forward(const float* x, int64_t num_tokens, float* out) const;
  // The same, with the intermediate buffers in `scratch` (no allocation once it has grown).
  void forward(const float* x, int64_t num_tokens, float* out, MlpScratch& scratch) const;

 private:
  Linear gate_, up_, down_;
};

}  // namespace epserve
