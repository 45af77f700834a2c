// SGLang's bench_one_batch offline: one batch of random prompts, prefill then decode, timed.
#pragma once

#include <cstdint>
#include <string>

namespace epserve {

struct BenchOneBatchOptions {
  std::string model_path;
  int64_t batch_size = 1;
  int64_t input_len = 128;
  int64_t output_len = 16;
  uint64_t seed = 0;
};

struct BenchOneBatchResult {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
  double load_seconds = 0;
  int64_t peak_rss_bytes = 0;
};

BenchOneBatchResult bench_one_batch(const BenchOneBatchOptions& options);

// The process's peak resident set (VmHWM), in bytes.
int64_t peak_rss_bytes();

}  // namespace epserve
