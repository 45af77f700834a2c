// Decode at batch 1 is memory-bound: every step streams the attention and dense weights, the
// router, the shared expert, the top-k routed experts of each MoE layer and the LM head. This
// program measures decode steps on a model and reports the weight bytes one step reads divided by
// its time, beside a STREAM-style triad bandwidth measured in the same run with the same threads.
//
//   decode_bandwidth MODEL_DIR [--steps N] [--threads T] [--context C]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "model/tensor_specs.h"
#include "runtime/generator.h"

using namespace epserve;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// a = b + s * c over arrays far larger than the caches; bytes moved = 3 * size (2 read, 1 write).
double triad_gb_per_s() {
  const int64_t n = int64_t{48} << 20;  // 48 Mi floats = 192 MiB per array
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t = std::chrono::steady_clock::now();
    ThreadPool::global().parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) a[i] = b[i] + 3.0f * c[i];
    });
    double s = seconds_since(t);
    best = std::max(best, 3.0 * n * sizeof(float) / s / 1e9);
  }
  return best;
}

// Weight bytes a batch-1 decode step reads: everything but the embedding table and the routed
// experts, plus top_k experts in each MoE layer.
double decode_weight_bytes(const CausalLM& model) {
  const ModelConfig& c = model.config();
  double bytes = 0;
  for (const TensorSpec& spec : model_tensor_specs(c)) {
    if (spec.name == "model.embed_tokens.weight") continue;
    if (spec.name.find(".experts.") != std::string::npos) continue;
    bytes += static_cast<double>(shape_numel(spec.shape)) * 2.0;  // BF16
  }
  if (c.tie_word_embeddings) bytes += 2.0 * c.vocab_size * c.hidden_size;
  double expert = 3.0 * c.hidden_size * c.moe.moe_intermediate_size * 2.0;
  bytes += c.num_moe_layers() * c.moe.top_k * expert;
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [--steps N] [--threads T] [--context C]\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  int steps = 32, threads = 0, context = 64;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--context")) context = std::atoi(argv[i + 1]);
  }
  if (threads > 0) ThreadPool::set_global_threads(threads);
  auto model = load_causal_lm(dir);
  double triad = triad_gb_per_s();

  GenerateRequest request;
  for (int i = 0; i < context; ++i) request.input_ids.push_back(3 + (i * 7919) % 1000);
  request.max_new_tokens = steps + 1;
  request.sampling.temperature = 0.0f;
  request.ignore_eos = true;
  generate(*model, {request});  // warm-up: pages the weights in
  GenerateTimings timings;
  generate(*model, {request}, &timings);
  double step_s = timings.decode_seconds / timings.decode_tokens;
  double bytes = decode_weight_bytes(*model);
  double gbs = bytes / step_s / 1e9;
  std::printf("model %s, threads %d, context %d, %lld decode steps\n", dir.c_str(),
              ThreadPool::global().num_threads(), context, (long long)timings.decode_tokens);
  std::printf("decode step: %.3f ms, weight bytes per step %.1f MB\n", step_s * 1e3, bytes / 1e6);
  std::printf("decode weight bandwidth: %.2f GB/s\n", gbs);
  std::printf("triad bandwidth (same threads): %.2f GB/s\n", triad);
  std::printf("ratio: %.1f%%\n", 100.0 * gbs / triad);
  return 0;
}
