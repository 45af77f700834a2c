// SGLang's bench_one_batch offline: one batch of random prompts, prefill then decode, timed.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/expert_runtime.h"
#include "runtime/generator.h"
#include "runtime/parallel_setup.h"

namespace epserve {

struct BenchOneBatchOptions {
  std::string model_path;
  int64_t batch_size = 1;
  int64_t input_len = 128;
  int64_t output_len = 16;
  uint64_t seed = 0;
  ParallelOptions parallel;
  // With --enable-eplb the experts are rebalanced once, from the warm-up pass's counts, before
  // the timed run; with any of these flags the result carries the timed run's balancedness.
  ExpertRuntimeOptions experts;
};

struct BenchOneBatchResult {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
  double load_seconds = 0;
  int64_t peak_rss_bytes = 0;
  GenerateTimings timings;
  int64_t resident_weight_bytes = 0;  // this rank's touched weight pages after the run
  int64_t expert_bytes_total = 0;     // all routed experts' weights of the model
  int64_t other_bytes_total = 0;      // every other weight (embeddings included)
  int rank = 0;
  double balancedness = -1;  // mean over the timed passes (-1: not measured)
  int64_t eplb_layers_moved = 0;
  bool report = true;  // false on ranks other than rank 0
};

// In a rank (or a single process): loads the model with the layout and runs the batch.
BenchOneBatchResult bench_one_batch(const BenchOneBatchOptions& options);

// The process's peak resident set (VmHWM), in bytes.
int64_t peak_rss_bytes();
// Bytes of *.safetensors mappings resident in this process (pages it touched), from smaps.
int64_t resident_weight_bytes();

}  // namespace epserve
