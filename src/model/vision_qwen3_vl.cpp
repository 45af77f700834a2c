#include "model/vision_qwen3_vl.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/thread_pool.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/vision_attention.h"
#include "kernels/cpu/vision_ops.h"

namespace epserve {
namespace {

std::vector<float> load_vector(const ModelWeights& weights, const std::string& name, int64_t n) {
  Tensor t = weights.get_f32(name, {n});
  return std::vector<float>(t.f32(), t.f32() + n);
}

}  // namespace

std::pair<int64_t, int64_t> vision_patch_row_col(int64_t i, int64_t w, int64_t merge) {
  const int64_t blocks_w = w / merge;
  const int64_t in_col = i % merge;
  const int64_t in_row = (i / merge) % merge;
  const int64_t block_col = (i / (merge * merge)) % blocks_w;
  const int64_t block_row = i / (merge * merge * blocks_w);
  return {block_row * merge + in_row, block_col * merge + in_col};
}

BiasedLinear BiasedLinear::load(const ModelWeights& weights, const std::string& prefix,
                                int64_t out_features, int64_t in_features) {
  BiasedLinear l;
  l.linear = Linear::load(weights, prefix + ".weight", out_features, in_features);
  l.bias = load_vector(weights, prefix + ".bias", out_features);
  return l;
}

void BiasedLinear::forward(const float* x, int64_t rows, float* y) const {
  linear.forward(x, rows, y);  // [rows, out]
  add_bias(y, bias.data(), rows, linear.out_features());
}

LayerNorm LayerNorm::load(const ModelWeights& weights, const std::string& prefix, int64_t dim) {
  LayerNorm n;
  n.weight = load_vector(weights, prefix + ".weight", dim);
  n.bias = load_vector(weights, prefix + ".bias", dim);
  return n;
}

void LayerNorm::forward(const float* x, int64_t rows, float* out) const {
  const auto dim = static_cast<int64_t>(weight.size());
  layernorm(x, weight.data(), bias.data(), rows, dim, eps, out);
}

VisionTower VisionTower::load(const ModelConfig& config, const ModelWeights& weights,
                              const std::string& prefix) {
  VisionTower v;
  v.vc_ = config.vision;
  const VisionConfig& vc = v.vc_;
  const int64_t D = vc.hidden_size;
  v.hidden_ = D;
  v.head_dim_ = D / vc.num_heads;
  v.side_ = static_cast<int64_t>(std::lround(std::sqrt(vc.num_position_embeddings)));
  const int64_t patch_dim = vc.patch_dim();
  // Conv3d weight [D, C, T, P, P] with stride = kernel: a matmul over the patch rows.
  Tensor conv =
      weights.matrix(prefix + ".patch_embed.proj.weight",
                     {D, vc.in_channels, vc.temporal_patch_size, vc.patch_size, vc.patch_size});
  v.patch_embed_.linear = Linear::of(conv.reshape({D, patch_dim}));
  v.patch_embed_.bias = load_vector(weights, prefix + ".patch_embed.proj.bias", D);
  Tensor pos = weights.get_f32(prefix + ".pos_embed.weight", {vc.num_position_embeddings, D});
  v.pos_embed_.assign(pos.f32(), pos.f32() + pos.numel());
  // Axial rotary: head_dim / 4 frequencies, shared by h and w (transformers'
  // Qwen3VLMoeVisionRotaryEmbedding over dim = head_dim / 2).
  const int64_t spatial = v.head_dim_ / 2;
  for (int64_t j = 0; j < spatial / 2; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(spatial);
    v.inv_freq_.push_back(1.0f / std::pow(static_cast<float>(vc.rope_theta), exponent));
  }
  for (int i = 0; i < vc.depth; ++i) {
    const std::string p = fmt::format("{}.blocks.{}", prefix, i);
    Block b;
    b.norm1 = LayerNorm::load(weights, p + ".norm1", D);
    b.norm2 = LayerNorm::load(weights, p + ".norm2", D);
    b.qkv = BiasedLinear::load(weights, p + ".attn.qkv", 3 * D, D);
    b.proj = BiasedLinear::load(weights, p + ".attn.proj", D, D);
    b.fc1 = BiasedLinear::load(weights, p + ".mlp.linear_fc1", vc.intermediate_size, D);
    b.fc2 = BiasedLinear::load(weights, p + ".mlp.linear_fc2", D, vc.intermediate_size);
    v.blocks_.push_back(std::move(b));
  }
  const int64_t unit = static_cast<int64_t>(vc.spatial_merge_size) * vc.spatial_merge_size;
  auto load_merger = [&](const std::string& p, bool postshuffle) {
    Merger m;
    m.postshuffle_norm = postshuffle;
    m.norm = LayerNorm::load(weights, p + ".norm", postshuffle ? D * unit : D);
    m.fc1 = BiasedLinear::load(weights, p + ".linear_fc1", D * unit, D * unit);
    m.fc2 = BiasedLinear::load(weights, p + ".linear_fc2", vc.out_hidden_size, D * unit);
    return m;
  };
  v.merger_ = load_merger(prefix + ".merger", false);
  for (size_t i = 0; i < vc.deepstack_visual_indexes.size(); ++i) {
    v.deepstack_.push_back(
        load_merger(fmt::format("{}.deepstack_merger_list.{}", prefix, i), true));
  }
  return v;
}

int64_t VisionTower::embed_width() const {
  return static_cast<int64_t>(vc_.out_hidden_size) * (1 + static_cast<int64_t>(deepstack_.size()));
}

void VisionTower::Merger::forward(const float* x, int64_t rows, int64_t hidden, int64_t unit,
                                  float* out, int64_t out_stride) const {
  const int64_t M = rows / unit;
  const int64_t W = hidden * unit;
  std::vector<float> merged(M * W);  // [M, hidden * unit]: unit consecutive patches per row
  if (postshuffle_norm) {
    norm.forward(x, M, merged.data());
  } else {
    norm.forward(x, rows, merged.data());
  }
  std::vector<float> mid(M * W);  // [M, hidden * unit]
  fc1.forward(merged.data(), M, mid.data());
  gelu_erf(mid.data(), M * W);
  const int64_t O = fc2.linear.out_features();
  std::vector<float> y(M * O);  // [M, out_hidden]
  fc2.forward(mid.data(), M, y.data());
  for (int64_t r = 0; r < M; ++r) std::copy_n(y.data() + r * O, O, out + r * out_stride);
}

void VisionTower::add_position_embeddings(int64_t t, int64_t h, int64_t w, float* x) const {
  const int64_t D = hidden_;
  const int64_t side = side_;
  const int64_t merge = vc_.spatial_merge_size;
  // One axis of F.interpolate(bilinear, align_corners=True) as taps and weights, in fp32.
  auto taps = [side](int64_t index, int64_t size, int64_t tap[2], float weight[2]) {
    const float src = static_cast<float>(index) * static_cast<float>(side - 1) /
                      static_cast<float>(std::max<int64_t>(size - 1, 1));
    const float floor = std::floor(src);
    for (int o = 0; o < 2; ++o) {
      tap[o] = std::clamp<int64_t>(static_cast<int64_t>(floor) + o, 0, side - 1);
      weight[o] = std::max(0.0f, 1.0f - std::fabs(src - floor - static_cast<float>(o)));
    }
  };
  for (int64_t i = 0; i < t * h * w; ++i) {
    auto [row, col] = vision_patch_row_col(i % (h * w), w, merge);
    int64_t ht[2], wt[2];
    float hw[2], ww[2];
    taps(row, h, ht, hw);
    taps(col, w, wt, ww);
    float* out = x + i * D;
    for (int64_t d = 0; d < D; ++d) {
      float sum = 0.0f;
      for (int a = 0; a < 2; ++a) {
        for (int b = 0; b < 2; ++b) {
          sum += pos_embed_[(ht[a] * side + wt[b]) * D + d] * (hw[a] * ww[b]);
        }
      }
      out[d] += sum;
    }
  }
}

void VisionTower::attention(const Block& b, int64_t t, int64_t h, int64_t w,
                            const std::vector<float>& angles, const float* normed, float* qkv,
                            float* attn, float* out) const {
  const int64_t D = hidden_;
  const int64_t hd = head_dim_;
  const int64_t heads = vc_.num_heads;
  const int64_t N = t * h * w;
  const int64_t n = h * w;        // one frame attends to itself
  b.qkv.forward(normed, N, qkv);  // [N, 3, heads, hd]
  ThreadPool::global().parallel_for(
      N,
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const float* angle = angles.data() + i * (hd / 2);
          apply_rope_angles(angle, static_cast<int>(hd / 2), qkv + i * 3 * D, heads, hd);
          apply_rope_angles(angle, static_cast<int>(hd / 2), qkv + i * 3 * D + D, heads, hd);
        }
      },
      16);
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  for (int64_t f = 0; f < t; ++f) {
    vision_attention(qkv + f * n * 3 * D, n, heads, hd, scale, attn + f * n * D);  // [n, D]
  }
  b.proj.linear.forward(attn, N, out);  // [N, D], without the bias
}

void VisionTower::forward(int64_t grid_t, int64_t grid_h, int64_t grid_w, const float* pixels,
                          float* out) const {
  const int64_t merge = vc_.spatial_merge_size;
  EPS_CHECK(grid_t > 0 && grid_h > 0 && grid_w > 0 && grid_h % merge == 0 && grid_w % merge == 0,
            "image grid {}x{}x{} is not whole {}x{} merge windows", grid_t, grid_h, grid_w, merge,
            merge);
  const int64_t D = hidden_;
  const int64_t hd = head_dim_;
  const int64_t N = grid_t * grid_h * grid_w;
  std::vector<float> x(N * D);  // [N, D]
  patch_embed_.forward(pixels, N, x.data());
  add_position_embeddings(grid_t, grid_h, grid_w, x.data());
  // 2-D rotary angles per patch: [row * inv_freq..., col * inv_freq...], [N, hd / 2].
  const auto quarter = static_cast<int64_t>(inv_freq_.size());
  std::vector<float> angles(N * (hd / 2));
  for (int64_t i = 0; i < N; ++i) {
    auto [row, col] = vision_patch_row_col(i % (grid_h * grid_w), grid_w, merge);
    for (int64_t j = 0; j < quarter; ++j) {
      angles[i * (hd / 2) + j] = static_cast<float>(row) * inv_freq_[j];
      angles[i * (hd / 2) + quarter + j] = static_cast<float>(col) * inv_freq_[j];
    }
  }
  const int64_t unit = merge * merge;
  const int64_t width = embed_width();
  const int64_t O = vc_.out_hidden_size;
  std::vector<float> normed(N * D), delta(N * D), attn(N * D);
  std::vector<float> qkv(N * 3 * D);                  // [N, 3, heads, hd]
  std::vector<float> mid(N * vc_.intermediate_size);  // [N, intermediate]
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    b.norm1.forward(x.data(), N, normed.data());
    attention(b, grid_t, grid_h, grid_w, angles, normed.data(), qkv.data(), attn.data(),
              delta.data());
    add_bias_residual(x.data(), delta.data(), b.proj.bias.data(), N, D);
    b.norm2.forward(x.data(), N, normed.data());
    b.fc1.forward(normed.data(), N, mid.data());
    gelu_tanh(mid.data(), N * vc_.intermediate_size);
    b.fc2.linear.forward(mid.data(), N, delta.data());  // [N, D], without the bias
    add_bias_residual(x.data(), delta.data(), b.fc2.bias.data(), N, D);
    const auto& ids = vc_.deepstack_visual_indexes;
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] != static_cast<int>(l)) continue;
      deepstack_[k].forward(x.data(), N, D, unit, out + O * (1 + static_cast<int64_t>(k)), width);
    }
  }
  merger_.forward(x.data(), N, D, unit, out, width);
}

}  // namespace epserve
