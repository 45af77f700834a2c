#include "model/layers.h"

#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/norm.h"

namespace epserve {

RopeParams rope_params(const RopeConfig& config) {
  RopeParams p;
  p.theta = config.theta;
  p.yarn = config.type == "yarn";
  p.factor = config.factor;
  p.original_max_position_embeddings = config.original_max_position_embeddings;
  p.beta_fast = config.beta_fast;
  p.beta_slow = config.beta_slow;
  p.mscale = config.mscale;
  p.mscale_all_dim = config.mscale_all_dim;
  p.attention_factor = config.attention_factor;
  p.truncate = config.truncate;
  p.interleave = config.interleave;
  return p;
}

RoutingParams routing_params(const MoeConfig& moe, const float* correction_bias) {
  RoutingParams p;
  p.sigmoid = moe.scoring == ScoringFunc::kSigmoid;
  p.num_experts = moe.num_experts;
  p.top_k = moe.top_k;
  p.n_group = moe.n_group;
  p.topk_group = moe.topk_group;
  p.norm_topk_prob = moe.norm_topk_prob;
  p.routed_scaling_factor = static_cast<float>(moe.routed_scaling_factor);
  p.correction_bias = correction_bias;
  return p;
}

Linear Linear::load(const ModelWeights& weights, const std::string& name, int64_t out_features,
                    int64_t in_features) {
  Linear l;
  l.storage_ = weights.matrix(name, {out_features, in_features});
  l.view_ = WeightView::of(l.storage_);
  return l;
}

Linear Linear::of(Tensor weight) {
  EPS_CHECK(weight.ndim() == 2 && (weight.dtype() == DType::BF16 || weight.dtype() == DType::F32),
            "a linear layer needs a 2-D BF16 or F32 weight, got {} {}", dtype_name(weight.dtype()),
            shape_str(weight.shape()));
  Linear l;
  l.storage_ = std::move(weight);
  l.view_ = WeightView::of(l.storage_);
  return l;
}

Linear Linear::rows(int64_t begin, int64_t end) const {
  Linear l = *this;
  l.view_ = view_.row_slice(begin, end);
  return l;
}

Linear Linear::cols(int64_t begin, int64_t end) const {
  Linear l = *this;
  l.view_ = view_.col_slice(begin, end);
  return l;
}

RmsNorm RmsNorm::load(const ModelWeights& weights, const std::string& name, int64_t dim,
                      double eps) {
  RmsNorm n;
  n.weight_ = weights.get_f32(name, {dim});
  n.eps_ = eps;
  return n;
}

void RmsNorm::forward(const float* x, int64_t rows, float* out) const {
  rmsnorm(x, weight_.f32(), rows, dim(), eps_, out);
}

void RmsNorm::forward_strided(const float* x, int64_t x_stride, int64_t rows, float* out,
                              int64_t out_stride) const {
  rmsnorm(x, x_stride, weight_.f32(), rows, dim(), eps_, out, out_stride);
}

GatedMlp GatedMlp::load(const ModelWeights& weights, const std::string& prefix, int64_t hidden_size,
                        int64_t intermediate_size, Shard shard) {
  EPS_CHECK(intermediate_size % shard.size == 0,
            "{}: intermediate size {} does not split over {} ranks", prefix, intermediate_size,
            shard.size);
  int64_t b = shard.begin(intermediate_size);
  int64_t e = shard.end(intermediate_size);
  GatedMlp m;
  m.gate_ = Linear::load(weights, prefix + ".gate_proj.weight", intermediate_size, hidden_size)
                .rows(b, e);
  m.up_ =
      Linear::load(weights, prefix + ".up_proj.weight", intermediate_size, hidden_size).rows(b, e);
  m.down_ = Linear::load(weights, prefix + ".down_proj.weight", hidden_size, intermediate_size)
                .cols(b, e);
  return m;
}

GatedMlp GatedMlp::of(Linear gate, Linear up, Linear down) {
  EPS_CHECK(gate.out_features() == up.out_features() && gate.in_features() == up.in_features() &&
                down.in_features() == gate.out_features() &&
                down.out_features() == gate.in_features(),
            "gated MLP parts do not fit: gate [{}, {}], up [{}, {}], down [{}, {}]",
            gate.out_features(), gate.in_features(), up.out_features(), up.in_features(),
            down.out_features(), down.in_features());
  GatedMlp m;
  m.gate_ = std::move(gate);
  m.up_ = std::move(up);
  m.down_ = std::move(down);
  return m;
}

void GatedMlp::forward(const float* x, int64_t num_tokens, float* out) const {
  MlpScratch scratch;
  forward(x, num_tokens, out, scratch);
}

void GatedMlp::forward(const float* x, int64_t num_tokens, float* out, MlpScratch& scratch) const {
  const int64_t inter = intermediate_size();
  scratch.gate.resize(num_tokens * inter);  // [T, I]
  scratch.up.resize(num_tokens * inter);    // [T, I]
  float* gate = scratch.gate.data();
  gate_.forward(x, num_tokens, gate);
  up_.forward(x, num_tokens, scratch.up.data());
  silu_mul(gate, scratch.up.data(), num_tokens * inter, gate);
  down_.forward(gate, num_tokens, out);  // [T, H]
}

}  // namespace epserve
