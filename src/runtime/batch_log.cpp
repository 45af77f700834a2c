#include "runtime/batch_log.h"

#include <algorithm>

#include "core/log.h"

namespace epserve {

BatchLog::BatchLog(int64_t decode_log_interval)
    : interval_(std::max<int64_t>(1, decode_log_interval)) {}

void BatchLog::prefill(int64_t new_seqs, int64_t new_tokens, int64_t cached_tokens,
                       int64_t running_before, const BatchLogState& s) {
  spdlog::info(
      "Prefill batch. #new-seq: {}, #new-token: {}, #cached-token: {}, token usage: {:.2f}, "
      "#running-req: {}, #queue-req: {}",
      new_seqs, new_tokens, cached_tokens,
      static_cast<double>(s.used_tokens) /
          static_cast<double>(std::max<int64_t>(1, s.total_tokens)),
      running_before, s.queued);
}

void BatchLog::decode(int64_t tokens, const BatchLogState& s) {
  auto now = Clock::now();
  // Time spent idle before decoding starts again is no part of the throughput.
  if (generated_ == 0) last_line_ = now;
  generated_ += tokens;
  if (++decode_batches_ % interval_ != 0) return;
  double seconds = std::chrono::duration<double>(now - last_line_).count();
  double throughput = seconds > 0 ? static_cast<double>(generated_) / seconds : 0.0;
  last_line_ = now;
  generated_ = 0;
  spdlog::info(
      "Decode batch. #running-req: {}, #token: {}, token usage: {:.2f}, gen throughput "
      "(token/s): {:.2f}, #queue-req: {}",
      s.running, s.used_tokens,
      static_cast<double>(s.used_tokens) /
          static_cast<double>(std::max<int64_t>(1, s.total_tokens)),
      throughput, s.queued);
}

}  // namespace epserve
