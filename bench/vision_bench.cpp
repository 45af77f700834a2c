// Vision tower benchmark (Qwen3-VL): images/s through the vision tower of
// Qwen/Qwen3-VL-235B-A22B-Instruct's shape (27 ViT blocks of 1152, 16 heads, MLP 4304, patch 16,
// 2x2 merge, DeepStack from blocks 8, 16, 24, out 4096) at a fixed resolution, and its share of
// one request's latency (vision + prefill + decode) on a language model of the real width cut
// down to fit a CPU bench (--lm-layers layers of hidden 4096, 64/4 heads of 128, 16 experts of
// 1536, top-8; the real model has 94 layers of 128 experts, so there the share is far smaller).
//   vision_bench [--image SIDE] [--lm-layers L] [--prompt N] [--decode N] [--passes P]
//                [--threads N]
// Random BF16 weights are written to a temporary model directory and loaded as epserve loads a
// checkpoint. The limit beside the tower's GFLOP/s is the same run's BF16 matmul on the tower's
// largest GEMM (patches x 1152 -> 4304), and the ratio of the two. Every figure is the best of
// the passes.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_clock.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "io/safetensors_writer.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vision_ops.h"
#include "model/causal_lm.h"
#include "runtime/model_runner.h"
#include "runtime/vision_inputs.h"

namespace epserve {
namespace {

constexpr int kDepth = 27, kVisionHidden = 1152, kVisionMlp = 4304, kVisionHeads = 16;
constexpr int kHidden = 4096, kHeads = 64, kKvHeads = 4, kHeadDim = 128, kExperts = 16;
constexpr int kTopK = 8, kMoeInter = 1536, kVocab = 4096, kPatchDim = 3 * 2 * 16 * 16;

// Small pseudo-random BF16 values (|x| < scale), or a constant.
TensorToWrite bf16(const std::string& name, Shape shape, float scale, float constant = 0.0f) {
  return {name, DType::BF16, shape, [scale, constant, name](void* dst, size_t bytes) {
            auto* out = static_cast<bf16_t*>(dst);
            uint64_t s = std::hash<std::string>{}(name) | 1;
            for (size_t i = 0; i < bytes / 2; ++i) {
              s = s * 6364136223846793005ULL + 1442695040888963407ULL;
              float u = static_cast<float>(s >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
              out[i] = f32_to_bf16(scale == 0.0f ? constant : u * scale);
            }
          }};
}

void write_model(const std::string& dir, int lm_layers) {
  std::vector<TensorToWrite> t;
  const std::string v = "model.visual.";
  const int64_t D = kVisionHidden;
  t.push_back(bf16(v + "patch_embed.proj.weight", {D, 3, 2, 16, 16}, 0.03f));
  t.push_back(bf16(v + "patch_embed.proj.bias", {D}, 0.01f));
  t.push_back(bf16(v + "pos_embed.weight", {2304, D}, 0.02f));
  for (int b = 0; b < kDepth; ++b) {
    const std::string p = fmt::format("{}blocks.{}.", v, b);
    for (const char* n : {"norm1", "norm2"}) {
      t.push_back(bf16(p + n + ".weight", {D}, 0.0f, 1.0f));
      t.push_back(bf16(p + n + ".bias", {D}, 0.0f));
    }
    t.push_back(bf16(p + "attn.qkv.weight", {3 * D, D}, 0.03f));
    t.push_back(bf16(p + "attn.qkv.bias", {3 * D}, 0.01f));
    t.push_back(bf16(p + "attn.proj.weight", {D, D}, 0.03f));
    t.push_back(bf16(p + "attn.proj.bias", {D}, 0.01f));
    t.push_back(bf16(p + "mlp.linear_fc1.weight", {kVisionMlp, D}, 0.03f));
    t.push_back(bf16(p + "mlp.linear_fc1.bias", {kVisionMlp}, 0.01f));
    t.push_back(bf16(p + "mlp.linear_fc2.weight", {D, kVisionMlp}, 0.015f));
    t.push_back(bf16(p + "mlp.linear_fc2.bias", {D}, 0.01f));
  }
  auto merger = [&](const std::string& p, int64_t norm_dim) {
    t.push_back(bf16(p + "norm.weight", {norm_dim}, 0.0f, 1.0f));
    t.push_back(bf16(p + "norm.bias", {norm_dim}, 0.0f));
    t.push_back(bf16(p + "linear_fc1.weight", {4 * D, 4 * D}, 0.015f));
    t.push_back(bf16(p + "linear_fc1.bias", {4 * D}, 0.01f));
    t.push_back(bf16(p + "linear_fc2.weight", {kHidden, 4 * D}, 0.015f));
    t.push_back(bf16(p + "linear_fc2.bias", {kHidden}, 0.01f));
  };
  merger(v + "merger.", D);
  for (int i = 0; i < 3; ++i) merger(fmt::format("{}deepstack_merger_list.{}.", v, i), 4 * D);
  const std::string lm = "model.language_model.";
  t.push_back(bf16(lm + "embed_tokens.weight", {kVocab, kHidden}, 0.02f));
  t.push_back(bf16(lm + "norm.weight", {kHidden}, 0.0f, 1.0f));
  t.push_back(bf16("lm_head.weight", {kVocab, kHidden}, 0.02f));
  for (int l = 0; l < lm_layers; ++l) {
    const std::string p = fmt::format("{}layers.{}.", lm, l);
    t.push_back(bf16(p + "input_layernorm.weight", {kHidden}, 0.0f, 1.0f));
    t.push_back(bf16(p + "post_attention_layernorm.weight", {kHidden}, 0.0f, 1.0f));
    t.push_back(bf16(p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden}, 0.02f));
    t.push_back(bf16(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden}, 0.02f));
    t.push_back(bf16(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden}, 0.02f));
    t.push_back(bf16(p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim}, 0.02f));
    t.push_back(bf16(p + "self_attn.q_norm.weight", {kHeadDim}, 0.0f, 1.0f));
    t.push_back(bf16(p + "self_attn.k_norm.weight", {kHeadDim}, 0.0f, 1.0f));
    t.push_back(bf16(p + "mlp.gate.weight", {kExperts, kHidden}, 0.02f));
    t.push_back(bf16(p + "mlp.experts.gate_up_proj", {kExperts, kHidden, 2 * kMoeInter}, 0.02f));
    t.push_back(bf16(p + "mlp.experts.down_proj", {kExperts, kMoeInter, kHidden}, 0.02f));
  }
  write_model_safetensors(dir, t, size_t{4} << 30);
  nlohmann::json c = {{"architectures", {"Qwen3VLMoeForConditionalGeneration"}},
                      {"model_type", "qwen3_vl_moe"},
                      {"image_token_id", 151655},
                      {"video_token_id", 151656},
                      {"vision_start_token_id", 151652},
                      {"vision_end_token_id", 151653},
                      {"tie_word_embeddings", false},
                      {"text_config",
                       {{"hidden_size", kHidden},
                        {"intermediate_size", 12288},
                        {"num_hidden_layers", lm_layers},
                        {"num_attention_heads", kHeads},
                        {"num_key_value_heads", kKvHeads},
                        {"head_dim", kHeadDim},
                        {"vocab_size", kVocab},
                        {"rms_norm_eps", 1e-6},
                        {"max_position_embeddings", 262144},
                        {"num_experts", kExperts},
                        {"num_experts_per_tok", kTopK},
                        {"moe_intermediate_size", kMoeInter},
                        {"decoder_sparse_step", 1},
                        {"hidden_act", "silu"},
                        {"rope_theta", 5000000.0},
                        {"rope_scaling",
                         {{"rope_type", "default"},
                          {"mrope_section", {24, 20, 20}},
                          {"mrope_interleaved", true}}}}},
                      {"vision_config",
                       {{"depth", kDepth},
                        {"hidden_size", kVisionHidden},
                        {"intermediate_size", kVisionMlp},
                        {"num_heads", kVisionHeads},
                        {"in_channels", 3},
                        {"patch_size", 16},
                        {"temporal_patch_size", 2},
                        {"spatial_merge_size", 2},
                        {"out_hidden_size", kHidden},
                        {"num_position_embeddings", 2304},
                        {"hidden_act", "gelu_pytorch_tanh"},
                        {"deepstack_visual_indexes", {8, 16, 24}}}}};
  // The bench's vocabulary is small: put the vision tokens inside it.
  c["image_token_id"] = 12;
  c["video_token_id"] = 13;
  c["vision_start_token_id"] = 9;
  c["vision_end_token_id"] = 10;
  std::ofstream(dir + "/config.json") << c.dump(1);
}

int arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return std::atoi(argv[i + 1]);
  }
  return fallback;
}

}  // namespace
}  // namespace epserve

int main(int argc, char** argv) {
  using namespace epserve;
  const int side = arg(argc, argv, "--image", 224);
  const int lm_layers = arg(argc, argv, "--lm-layers", 4);
  const int prompt_text = arg(argc, argv, "--prompt", 32);
  const int decode = arg(argc, argv, "--decode", 16);
  const int passes = arg(argc, argv, "--passes", 3);
  if (int threads = arg(argc, argv, "--threads", 0); threads > 0) {
    ThreadPool::set_global_threads(threads);
  }
  char tmpl[] = "/tmp/vision_bench_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::printf("writing the bench model to %s ...\n", dir.c_str());
  write_model(dir, lm_layers);
  auto model = load_causal_lm(dir);
  const int64_t grid = side / 16;
  ImageInput im;
  im.grid_h = grid;
  im.grid_w = grid;
  im.pixel_values.resize(grid * grid * kPatchDim);
  for (size_t i = 0; i < im.pixel_values.size(); ++i) {
    im.pixel_values[i] = static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  }
  const int64_t patches = grid * grid, tokens = patches / 4;
  const int64_t width = model->config().vision.embed_width();
  std::vector<float> embeds(tokens * width);
  // The largest GEMM of a ViT block, alone, as the limit.
  std::vector<float> x(patches * kVisionHidden, 0.1f), y(patches * kVisionMlp);
  Tensor w = Tensor::empty(DType::BF16, {kVisionMlp, kVisionHidden});
  const double block_flops =
      2.0 * patches * (4.0 * kVisionHidden * kVisionHidden + 2.0 * kVisionHidden * kVisionMlp) +
      4.0 * patches * patches * kVisionHidden;
  const double merger_flops =
      2.0 * tokens * (16.0 * kVisionHidden * kVisionHidden + 4.0 * kVisionHidden * kHidden) * 4;
  const double tower_flops =
      kDepth * block_flops + merger_flops + 2.0 * patches * kPatchDim * kVisionHidden;
  double best_vision = 1e30, best_gemm = 1e30, best_prefill = 1e30, best_decode = 1e30;
  // The tower's GELU-tanh calls (one per block over [patches, 4304]) on the run-time path and on
  // the scalar reference.
  double best_gelu = 1e30, best_gelu_scalar = 1e30;
  std::vector<float> act(patches * kVisionMlp);
  // Prompt: text, <vision_start>, the image tokens, <vision_end>, text.
  std::vector<int32_t> ids;
  for (int i = 0; i < prompt_text; ++i) ids.push_back(100 + i);
  ids.push_back(9);
  ids.insert(ids.end(), tokens, 12);
  ids.push_back(10);
  for (int i = 0; i < 8; ++i) ids.push_back(200 + i);
  const auto n = static_cast<int64_t>(ids.size());
  for (int p = 0; p < passes; ++p) {
    double t0 = bench_clock::now_seconds();
    matmul(x.data(), patches, WeightView::of(w), y.data());
    best_gemm = std::min(best_gemm, bench_clock::now_seconds() - t0);
    for (int fast = 0; fast < 2; ++fast) {
      t0 = bench_clock::now_seconds();
      for (int b = 0; b < kDepth; ++b) {
        for (size_t i = 0; i < act.size(); ++i) act[i] = static_cast<float>(i % 97) * 0.05f - 2.4f;
        if (fast) {
          gelu_tanh(act.data(), static_cast<int64_t>(act.size()));
        } else {
          gelu_tanh_reference(act.data(), static_cast<int64_t>(act.size()));
        }
      }
      double& best = fast ? best_gelu : best_gelu_scalar;
      best = std::min(best, bench_clock::now_seconds() - t0);
    }
    t0 = bench_clock::now_seconds();
    model->encode_image(1, grid, grid, im.pixel_values.data(), embeds.data());
    best_vision = std::min(best_vision, bench_clock::now_seconds() - t0);
    LocalModelRunner runner(*model, n + decode + 1);
    RequestVision vision;
    std::string error = prepare_vision(model->config(), ids, {im}, vision);
    if (!error.empty()) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    vision.embeds[0] = embeds;  // encoded above
    std::vector<int32_t> slots(n);
    for (int64_t i = 0; i < n; ++i) slots[i] = static_cast<int32_t>(i);
    ForwardBatch prefill;
    prefill.add_sequence(ids.data(), n, 0, slots, LogitsWanted::kLast);
    add_vision_rows(prefill, 0, n, {im}, vision, runner);
    std::vector<float> logits(kVocab);
    t0 = bench_clock::now_seconds();
    runner.forward(prefill, logits.data());
    best_prefill = std::min(best_prefill, bench_clock::now_seconds() - t0);
    t0 = bench_clock::now_seconds();
    for (int s = 0; s < decode; ++s) {
      slots.push_back(static_cast<int32_t>(n + s));
      const int32_t token = 300 + s;
      ForwardBatch b;
      b.add_sequence(&token, 1, n + s, slots, LogitsWanted::kLast);
      add_vision_rows(b, n + s, 1, {im}, vision, runner);
      runner.forward(b, logits.data());
    }
    best_decode = std::min(best_decode, bench_clock::now_seconds() - t0);
  }
  std::filesystem::remove_all(dir);
  const double gemm_gflops = 2.0 * patches * kVisionHidden * kVisionMlp / best_gemm / 1e9;
  const double tower_gflops = tower_flops / best_vision / 1e9;
  const double total = best_vision + best_prefill + best_decode;
  std::printf("image %dx%d: %lld patches, %lld tokens; threads %d; cpu %s\n", side, side,
              static_cast<long long>(patches), static_cast<long long>(tokens),
              ThreadPool::global().num_threads(), kernel_paths_summary().c_str());
  std::printf("vision tower: %.1f ms/image, %.2f images/s, %.1f GFLOP/s (%.1f GFLOP/image)\n",
              best_vision * 1e3, 1.0 / best_vision, tower_gflops, tower_flops / 1e9);
  std::printf("limit: BF16 matmul %lldx%d -> %d: %.1f GFLOP/s; tower / limit %.2f\n",
              static_cast<long long>(patches), kVisionHidden, kVisionMlp, gemm_gflops,
              tower_gflops / gemm_gflops);
  std::printf("GELU-tanh of the tower's MLPs: %.1f ms (scalar reference %.1f ms)\n",
              best_gelu * 1e3, best_gelu_scalar * 1e3);
  std::printf(
      "request (%lld-token prompt, %d decode steps, %d-layer LM): vision %.1f ms, prefill %.1f "
      "ms, decode %.1f ms; vision share %.1f%%\n",
      static_cast<long long>(n), decode, lm_layers, best_vision * 1e3, best_prefill * 1e3,
      best_decode * 1e3, 100.0 * best_vision / total);
  return 0;
}
