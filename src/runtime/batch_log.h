// SGLang's scheduler log lines (its scheduler's log_prefill_stats and log_decode_stats), at info:
//   Prefill batch. #new-seq: 1, #new-token: 7, #cached-token: 0, token usage: 0.00,
//     #running-req: 0, #queue-req: 0
//   Decode batch. #running-req: 1, #token: 48, token usage: 0.01, gen throughput (token/s): 61.20,
//     #queue-req: 0
// one prefill line per batch with prompt tokens, one decode line every decode_log_interval
// decode batches (SGLang's --decode-log-interval) with the tokens generated per second since the
// last decode line.
#pragma once

#include <chrono>
#include <cstdint>

namespace epserve {

// The scheduler's state a line reports.
struct BatchLogState {
  int64_t running = 0;      // requests in the running batch
  int64_t queued = 0;       // requests waiting to be admitted
  int64_t used_tokens = 0;  // KV slots held by requests (not counting evictable cached prefixes)
  int64_t total_tokens = 1;
};

class BatchLog {
 public:
  explicit BatchLog(int64_t decode_log_interval);

  void prefill(int64_t new_seqs, int64_t new_tokens, int64_t cached_tokens, int64_t running_before,
               const BatchLogState& state);
  // A decode batch that generated `tokens` tokens.
  void decode(int64_t tokens, const BatchLogState& state);

 private:
  using Clock = std::chrono::steady_clock;
  int64_t interval_;
  int64_t decode_batches_ = 0;
  int64_t generated_ = 0;  // since the last decode line
  Clock::time_point last_line_ = Clock::now();
};

}  // namespace epserve
