// Decode at batch 1 is memory-bound: every step streams the attention and dense weights, the
// router, the shared expert, the top-k routed experts of each MoE layer and the LM head. This
// program measures decode steps on a model and reports the weight bytes one step reads divided by
// its time, beside a STREAM-style triad bandwidth measured in the same run with the same threads.
//
//   decode_bandwidth MODEL_DIR [--steps N] [--threads T] [--context C] [--cpu-time 1]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "runtime/generator.h"

using namespace epserve;

namespace {

// Weight bytes a batch-1 decode step reads, as stored (BF16, or FP8 / packed INT4 with their
// scales): everything but the embedding table and the routed experts, plus on average top_k of
// the num_experts routed experts in each MoE layer. `expert_bytes` gets the routed part.
double decode_weight_bytes(const CausalLM& model, double* expert_bytes) {
  const ModelConfig& c = model.config();
  double other = 0, experts = 0;
  for (const std::string& name : model.weights().names()) {
    if (name == "model.embed_tokens.weight") continue;
    const double n = static_cast<double>(model.weights().nbytes(name));
    (name.find(".mlp.experts.") != std::string::npos ? experts : other) += n;
  }
  if (c.tie_word_embeddings) other += model.weights().nbytes("model.embed_tokens.weight");
  *expert_bytes = c.moe.num_experts > 0 ? experts * c.moe.top_k / c.moe.num_experts : 0;
  return other + *expert_bytes;
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
    if (!std::strcmp(argv[i], "--cpu-time")) bench_clock::cpu_time = std::atoi(argv[i + 1]) != 0;
  }
  if (bench_clock::cpu_time && threads != 1) {
    std::fprintf(stderr, "--cpu-time 1 needs --threads 1\n");
    return 2;
  }
  if (threads > 0) ThreadPool::set_global_threads(threads);
  auto model = load_causal_lm(dir);
  double triad = bench_clock::triad_gb_per_s();

  GenerateRequest request;
  for (int i = 0; i < context; ++i) request.input_ids.push_back(3 + (i * 7919) % 1000);
  request.max_new_tokens = steps + 1;
  request.sampling.temperature = 0.0f;
  request.ignore_eos = true;
  generate(*model, {request});  // warm-up: pages the weights in
  GenerateTimings timings;
  generate(*model, {request}, &timings);
  double step_s = timings.decode_seconds / timings.decode_tokens;
  if (bench_clock::cpu_time) {
    GenerateRequest one = request;
    one.max_new_tokens = 1;
    double best_one = 1e30, best_all = 1e30;
    for (int rep = 0; rep < 3; ++rep) {  // best of 3 of each, interleaved
      double t = bench_clock::now_seconds();
      generate(*model, {one});
      best_one = std::min(best_one, bench_clock::seconds_since(t));
      t = bench_clock::now_seconds();
      generate(*model, {request});
      best_all = std::min(best_all, bench_clock::seconds_since(t));
    }
    step_s = (best_all - best_one) / steps;
  }
  double expert_bytes = 0;
  double bytes = decode_weight_bytes(*model, &expert_bytes);
  double gbs = bytes / step_s / 1e9;
  std::printf("model %s, threads %d, context %d, %lld decode steps, %s\n", dir.c_str(),
              ThreadPool::global().num_threads(), context, (long long)timings.decode_tokens,
              bench_clock::cpu_time ? "thread CPU time (best of 3)" : "wall time");
  std::printf("quantization: %s\n", model->config().quant.describe().c_str());
  std::printf(
      "decode step: %.3f ms (%.1f tok/s), weight bytes per step %.1f MB (routed experts %.1f MB)\n",
      step_s * 1e3, 1.0 / step_s, bytes / 1e6, expert_bytes / 1e6);
  std::printf("decode weight bandwidth: %.2f GB/s\n", gbs);
  std::printf("triad bandwidth (same threads): %.2f GB/s\n", triad);
  std::printf("ratio: %.1f%%\n", 100.0 * gbs / triad);
  return 0;
}
