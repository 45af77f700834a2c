#include "runtime/bench_one_batch.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <string>

#include "core/error.h"
#include "model/causal_lm.h"
#include "runtime/generator.h"

namespace epserve {

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

BenchOneBatchResult bench_one_batch(const BenchOneBatchOptions& o) {
  EPS_CHECK(o.batch_size > 0 && o.input_len > 0 && o.output_len > 0,
            "--batch-size, --input-len and --output-len must be positive");
  BenchOneBatchResult result;
  auto start = std::chrono::steady_clock::now();
  auto model = load_causal_lm(o.model_path);
  result.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model->vocab_size() - 1));
  std::vector<GenerateRequest> requests(o.batch_size);
  for (auto& r : requests) {
    r.input_ids.resize(o.input_len);
    for (auto& id : r.input_ids) id = token(rng);
    r.max_new_tokens = o.output_len;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
  }
  // Warm-up with the same batch, as SGLang's bench_one_batch does: the first pass pages in the
  // mmapped weights, which is loading, not prefill.
  std::vector<GenerateRequest> warmup = requests;
  for (auto& r : warmup) r.max_new_tokens = std::min<int64_t>(2, o.output_len);
  generate(*model, warmup);
  GenerateTimings timings;
  generate(*model, requests, &timings);
  result.prefill_seconds = timings.prefill_seconds;
  result.decode_seconds = timings.decode_seconds;
  result.prefill_tokens_per_second = timings.prefill_tokens / timings.prefill_seconds;
  // The first output token comes from the prefill; decode steps make the rest.
  result.decode_tokens_per_second =
      timings.decode_seconds > 0 ? timings.decode_tokens / timings.decode_seconds : 0.0;
  result.peak_rss_bytes = peak_rss_bytes();
  return result;
}

}  // namespace epserve
