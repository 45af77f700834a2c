// Decode at small batches is memory-bound: every step streams the attention and dense weights,
// the router, the shared expert, the routed experts that the step's tokens selected in each MoE
// layer and the LM head. This program measures decode steps of B sequences decoding together
// (one step = B tokens) and reports the weight bytes one step reads divided by its time, beside
// a STREAM-style triad bandwidth measured in the same run with the same threads. The routed
// experts a step reads are counted from the router's decisions in that step: the distinct
// experts each MoE layer selected for the step's B tokens.
//
//   decode_bandwidth MODEL_DIR [--steps N] [--threads T] [--context C] [--batch B] [--cpu-time 1]
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "model/moe.h"
#include "runtime/generator.h"

using namespace epserve;

namespace {

// Weight bytes of the model as stored (BF16, or FP8 / packed INT4 with their scales): `other`
// is everything a decode step reads whatever the routing (all but the embedding table and the
// routed experts), `expert[layer]` the bytes of one routed expert of that layer.
struct WeightBytes {
  double other = 0;
  std::vector<double> expert;
};

// The layer number in "...layers.N.<rest>" (Qwen3-VL-MoE's language model is
// "model.language_model.layers.N..."), or -1.
int64_t layer_of(const std::string& name) {
  const size_t at = name.find("layers.");
  if (at == std::string::npos) return -1;
  size_t i = at + 7, end = i;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  return end > i ? std::stoll(name.substr(i, end - i)) : -1;
}

WeightBytes weight_bytes(const CausalLM& model) {
  const ModelConfig& c = model.config();
  WeightBytes b;
  std::vector<double> layer_experts;
  for (const std::string& name : model.weights().names()) {
    if (name.ends_with("embed_tokens.weight")) continue;
    // Decode never reads a vision tower, nor a layer past the model's (an MTP module).
    if (name.find("visual.") != std::string::npos) continue;
    const int64_t layer = layer_of(name);
    if (layer >= c.num_layers) continue;
    const double n = static_cast<double>(model.weights().nbytes(name));
    if (name.find(".mlp.experts.") == std::string::npos || layer < 0) {
      b.other += n;
      continue;
    }
    if (layer >= static_cast<int64_t>(layer_experts.size())) layer_experts.resize(layer + 1, 0.0);
    layer_experts[layer] += n;
  }
  if (c.tie_word_embeddings) {
    for (const std::string& name : model.weights().names()) {
      if (name.ends_with("embed_tokens.weight")) b.other += model.weights().nbytes(name);
    }
  }
  for (double e : layer_experts) b.expert.push_back(e / std::max(1, c.moe.num_experts));
  return b;
}

// The routed experts that decode steps read: per step, the distinct experts that each MoE
// layer's router selected for the step's tokens (a step is a pass with one new token per
// sequence, after the prompt).
class StepExperts : public MoeObserver, public PassObserver {
 public:
  StepExperts(const WeightBytes& bytes, int num_experts) : bytes_(bytes), seen_(num_experts) {}
  void on_pass_begin(const ForwardBatch& batch) override {
    decode_ = !batch.seqs.empty() &&
              std::all_of(batch.seqs.begin(), batch.seqs.end(),
                          [](const SequenceInput& s) { return s.num_new == 1 && s.num_past > 0; });
    steps += decode_ ? 1 : 0;
  }
  void on_pass_end() override {}
  void on_routing(int layer, int64_t num_tokens, int top_k, const int32_t* topk_ids,
                  const float*) override {
    if (!decode_) return;
    std::fill(seen_.begin(), seen_.end(), false);
    int64_t distinct = 0;
    for (int64_t i = 0; i < num_tokens * top_k; ++i) {
      distinct += seen_[topk_ids[i]] ? 0 : 1;
      seen_[topk_ids[i]] = true;
    }
    experts += distinct;
    expert_bytes += static_cast<double>(distinct) * bytes_.expert.at(layer);
    layer_steps += 1;
  }
  void reset() { steps = experts = layer_steps = 0, expert_bytes = 0; }

  int64_t steps = 0, experts = 0, layer_steps = 0;  // layer_steps: (MoE layer, step) pairs
  double expert_bytes = 0;

 private:
  const WeightBytes& bytes_;
  std::vector<bool> seen_;
  bool decode_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s MODEL_DIR [--steps N] [--threads T] [--context C] [--batch B] "
                 "[--cpu-time 1]\n",
                 argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  int steps = 32, threads = 0, context = 64, batch = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--context")) context = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--cpu-time")) bench_clock::cpu_time = std::atoi(argv[i + 1]) != 0;
  }
  if (bench_clock::cpu_time && threads != 1) {
    std::fprintf(stderr, "--cpu-time 1 needs --threads 1\n");
    return 2;
  }
  if (batch < 1) {
    std::fprintf(stderr, "--batch must be at least 1\n");
    return 2;
  }
  if (threads > 0) ThreadPool::set_global_threads(threads);
  auto model = load_causal_lm(dir);
  double triad = bench_clock::triad_gb_per_s();
  const WeightBytes bytes = weight_bytes(*model);
  StepExperts counter(bytes, std::max(1, model->config().moe.num_experts));

  // B prompts of `context` tokens, different in every sequence so that their routing differs.
  std::vector<GenerateRequest> requests(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    GenerateRequest& request = requests[static_cast<size_t>(b)];
    for (int i = 0; i < context; ++i)
      request.input_ids.push_back(3 + (i * 7919 + b * 104729) % 1000);
    request.max_new_tokens = steps + 1;
    request.sampling.temperature = 0.0f;
    request.ignore_eos = true;
  }
  generate(*model, requests);  // warm-up: pages the weights in
  GenerateTimings timings;
  model->set_moe_observer(&counter);
  model->set_pass_observer(&counter);
  generate(*model, requests, &timings);
  model->set_moe_observer(nullptr);
  model->set_pass_observer(nullptr);
  const int64_t measured_steps = timings.decode_tokens / batch;
  double step_s = timings.decode_seconds / static_cast<double>(measured_steps);
  if (bench_clock::cpu_time) {
    std::vector<GenerateRequest> one = requests;
    for (GenerateRequest& r : one) r.max_new_tokens = 1;
    double best_one = 1e30, best_all = 1e30;
    for (int rep = 0; rep < 3; ++rep) {  // best of 3 of each, interleaved
      double t = bench_clock::now_seconds();
      generate(*model, one);
      best_one = std::min(best_one, bench_clock::seconds_since(t));
      t = bench_clock::now_seconds();
      generate(*model, requests);
      best_all = std::min(best_all, bench_clock::seconds_since(t));
    }
    step_s = (best_all - best_one) / steps;
  }
  // Routing is deterministic (greedy, fixed prompts): the timed runs select what was counted.
  const int64_t counted = std::max<int64_t>(1, counter.steps);
  const double expert_bytes = counter.expert_bytes / static_cast<double>(counted);
  const double step_bytes = bytes.other + expert_bytes;
  const double gbs = step_bytes / step_s / 1e9;
  std::printf("model %s, threads %d, context %d, batch %d, %lld decode steps, %s\n", dir.c_str(),
              ThreadPool::global().num_threads(), context, batch, (long long)measured_steps,
              bench_clock::cpu_time ? "thread CPU time (best of 3)" : "wall time");
  std::printf("quantization: %s\n", model->config().quant.describe().c_str());
  std::printf(
      "decode step: %.3f ms (%.1f tok/s), weight bytes per step %.1f MB (routed experts %.1f MB)\n",
      step_s * 1e3, batch / step_s, step_bytes / 1e6, expert_bytes / 1e6);
  if (counter.layer_steps > 0) {
    std::printf(
        "routed experts read per MoE layer and step: %.2f distinct of %d (top-%d x %d tokens)\n",
        static_cast<double>(counter.experts) / static_cast<double>(counter.layer_steps),
        model->config().moe.num_experts, model->config().moe.top_k, batch);
  }
  std::printf("weight bytes per token: %.2f MB\n", step_bytes / batch / 1e6);
  std::printf("decode weight bandwidth: %.2f GB/s\n", gbs);
  std::printf("triad bandwidth (same threads): %.2f GB/s\n", triad);
  std::printf("ratio: %.1f%%\n", 100.0 * gbs / triad);
  return 0;
}
