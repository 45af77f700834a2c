#include "model/layers.h"

#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/matmul_quant.h"
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

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void load_int4(const ModelWeights& weights, const std::string& prefix, int64_t out_features,
               int64_t in_features, Tensor& values, Tensor& scales) {
  const QuantConfig& q = weights.quantization();
  const std::string packed_name = prefix + ".weight_packed";
  EPS_CHECK(q.method == QuantMethod::kInt4Pack,
            "{}: tensor '{}' is packed INT4 but config.json has no compressed-tensors "
            "quantization_config",
            weights.file_of(packed_name), packed_name);
  const std::string shape_name = prefix + ".weight_shape";
  Tensor shape = weights.raw(shape_name);
  EPS_CHECK(shape.ndim() == 1 && shape.dim(0) == 2 &&
                (shape.dtype() == DType::I32 || shape.dtype() == DType::I64),
            "{}: tensor '{}' must be an integer [2], found {} {}", weights.file_of(shape_name),
            shape_name, dtype_name(shape.dtype()), shape_str(shape.shape()));
  int64_t dims[2];
  for (int i = 0; i < 2; ++i) {
    dims[i] =
        shape.dtype() == DType::I32 ? shape.ptr<const int32_t>()[i] : shape.ptr<const int64_t>()[i];
  }
  EPS_CHECK(dims[0] == out_features && dims[1] == in_features,
            "{}: tensor '{}' says [{}, {}], expected [{}, {}]", weights.file_of(shape_name),
            shape_name, dims[0], dims[1], out_features, in_features);
  values = weights.raw(packed_name);
  const std::string scale_name = prefix + ".weight_scale";
  scales = weights.raw(scale_name);
  if (scales.dtype() == DType::F16) {
    Tensor f32 = Tensor::empty(DType::F32, scales.shape());
    convert_to_f32(scales, f32.f32());
    scales = f32;
  }
}

}  // namespace

Linear Linear::load(const ModelWeights& weights, const std::string& name, int64_t out_features,
                    int64_t in_features) {
  Linear l;
  if (ends_with(name, ".weight")) {
    const std::string prefix = name.substr(0, name.size() - 7);
    if (weights.has(prefix + ".weight_packed")) {
      load_int4(weights, prefix, out_features, in_features, l.storage_, l.scale_storage_);
      try {
        l.view_ = int4_group_view(l.storage_, l.scale_storage_, out_features, in_features,
                                  weights.quantization().group_size);
      } catch (const Error& e) {
        EPS_THROW("{}: '{}.weight_packed' / '.weight_scale': {}",
                  weights.file_of(prefix + ".weight_packed"), prefix, e.what());
      }
      return l;
    }
    if (weights.has(name) && weights.dtype_of(name) == DType::F8_E4M3) {
      const QuantConfig& q = weights.quantization();
      EPS_CHECK(q.method == QuantMethod::kFp8Block,
                "{}: tensor '{}' is float8_e4m3fn but config.json has no fp8 quantization_config",
                weights.file_of(name), name);
      const std::string scale_name = name + "_scale_inv";
      EPS_CHECK(weights.has(scale_name), "{}: tensor '{}' is float8_e4m3fn but '{}' is missing",
                weights.file_of(name), name, scale_name);
      l.storage_ = weights.raw(name, {out_features, in_features});
      l.scale_storage_ = weights.raw(scale_name);
      try {
        l.view_ = fp8_block_view(l.storage_, l.scale_storage_, q.block_rows, q.block_cols);
      } catch (const Error& e) {
        EPS_THROW("{}: tensor '{}': {}", weights.file_of(scale_name), scale_name, e.what());
      }
      return l;
    }
  }
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

Linear Linear::of(const WeightView& like, Tensor values, Tensor scales) {
  if (like.format == WeightFormat::kDense) return of(std::move(values));
  EPS_CHECK(like.row0 == 0 && like.col0 == 0, "Linear::of needs a whole block-scaled matrix");
  Linear l;
  l.storage_ = std::move(values);
  l.scale_storage_ = std::move(scales);
  l.view_ = like;
  l.view_.data = l.storage_.data();
  l.view_.scales = l.scale_storage_.data();
  return l;
}

std::pair<std::span<const uint8_t>, std::span<const uint8_t>> Linear::stored_bytes() const {
  const auto* values = static_cast<const uint8_t*>(view_.data);
  if (view_.format == WeightFormat::kDense) {
    EPS_CHECK(view_.row_stride == view_.cols, "stored_bytes of a column slice");
    return {{values, static_cast<size_t>(view_.rows * view_.cols) * dtype_size(view_.dtype)}, {}};
  }
  const int64_t value_bytes = view_.format == WeightFormat::kInt4Group
                                  ? view_.rows * view_.row_stride / 2
                                  : view_.rows * view_.row_stride;
  EPS_CHECK(
      view_.row0 == 0 && view_.col0 == 0 && static_cast<int64_t>(storage_.nbytes()) == value_bytes,
      "stored_bytes of a sliced block-scaled weight");
  return {{values, storage_.nbytes()},
          {static_cast<const uint8_t*>(view_.scales), scale_storage_.nbytes()}};
}

Linear Linear::dequantized() const {
  if (view_.format == WeightFormat::kDense) return *this;
  Tensor t = Tensor::empty(DType::F32, {view_.rows, view_.cols});
  for (int64_t r = 0; r < view_.rows; ++r)
    for (int64_t c = 0; c < view_.cols; ++c) t.f32()[r * view_.cols + c] = view_.at(r, c);
  return of(std::move(t));
}

Linear Linear::transposed_rows(int64_t begin, int64_t end) const {
  EPS_CHECK(view_.format != WeightFormat::kDense, "transposed_rows is for block-scaled weights");
  EPS_CHECK(0 <= begin && begin < end && end <= view_.rows, "rows [{}, {}) of {}", begin, end,
            view_.rows);
  const int64_t n = end - begin, cols = view_.cols;
  const int64_t r0 = view_.row0 + begin, br = view_.block_rows, bc = view_.block_cols;
  const bool one_block_row = r0 / br == (view_.row0 + end - 1) / br;
  if (view_.format != WeightFormat::kFp8Block || view_.col0 % bc != 0 ||
      (r0 % br != 0 && !one_block_row)) {
    Tensor t = Tensor::empty(DType::F32, {cols, n});
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < cols; ++c) t.f32()[c * n + r] = view_.at(begin + r, c);
    return of(std::move(t));
  }
  Tensor codes = Tensor::empty(DType::F8_E4M3, {cols, n});
  auto* dst = static_cast<uint8_t*>(codes.data());
  const auto* src = static_cast<const uint8_t*>(view_.data);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[c * n + r] = src[(r0 + r) * view_.row_stride + view_.col0 + c];
  // The transposed grid: blocks of bc rows (this matrix's columns) by br columns (its rows).
  const int64_t grid_rows = (cols + bc - 1) / bc, grid_cols = (n + br - 1) / br;
  Tensor scales = Tensor::empty(DType::F32, {grid_rows, grid_cols});
  EPS_CHECK(view_.scale_dtype == DType::F32, "FP8 block scales are F32");
  const auto* stored = static_cast<const float*>(view_.scales);
  for (int64_t i = 0; i < grid_rows; ++i) {
    for (int64_t j = 0; j < grid_cols; ++j) {
      // Any element of transposed block (i, j) lies in stored block (r / br, c / bc).
      const int64_t r = r0 + j * br, c = view_.col0 + i * bc;
      scales.f32()[i * grid_cols + j] = stored[(r / br) * view_.scale_stride + c / bc];
    }
  }
  Linear l;
  l.storage_ = std::move(codes);
  l.scale_storage_ = std::move(scales);
  l.view_ = WeightView{};
  l.view_.dtype = DType::F8_E4M3;
  l.view_.data = l.storage_.data();
  l.view_.rows = cols;
  l.view_.cols = n;
  l.view_.row_stride = n;
  l.view_.format = WeightFormat::kFp8Block;
  l.view_.scales = l.scale_storage_.data();
  l.view_.scale_dtype = DType::F32;
  l.view_.scale_stride = grid_cols;
  l.view_.block_rows = bc;
  l.view_.block_cols = br;
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
