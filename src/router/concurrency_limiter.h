// The router's concurrency limiter, as SGLang's router defines it (--max-concurrent-requests,
// --queue-size, --queue-timeout-secs, --rate-limit-tokens-per-second): a token bucket of
// max_concurrent_requests tokens, full at start, refilled at rate_limit_tokens_per_second (or
// max_concurrent_requests when unset) tokens per second; each inference request takes one token
// and gives it back when its response (a stream: its last chunk) is done. A request that finds no
// token waits in a queue of queue_size places (in arrival order) for at most queue_timeout_secs:
// a full queue (or queue_size 0) is a 429, a wait that runs out a 408.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>

namespace epserve {

// The bucket's arithmetic on explicit times (seconds), so that it can be tested without a clock.
class TokenBucket {
 public:
  TokenBucket(double capacity, double refill_per_second, double now_s);
  // Adds what the time since the last call refilled (never above the capacity).
  void refill(double now_s);
  bool try_take(double now_s);
  void give_back();  // a finished request's token (never above the capacity)
  // Seconds from now_s until a whole token is there (0 when one is).
  double seconds_until_token(double now_s);
  double tokens() const { return tokens_; }

 private:
  double capacity_, refill_per_second_, tokens_, last_s_;
};

enum class Admission { admitted, queue_full, queue_timeout };

class ConcurrencyLimiter {
 public:
  // refill_per_second <= 0 means max_concurrent_requests, as in SGLang.
  ConcurrencyLimiter(int max_concurrent_requests, int refill_per_second, int queue_size,
                     double queue_timeout_s);
  // Blocks while queued. On `admitted` the caller must call release() once its response is done.
  Admission acquire();
  void release();

  int queued() const;

 private:
  double now_s() const;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  TokenBucket bucket_;
  int queue_size_;
  double queue_timeout_s_;
  std::deque<uint64_t> queue_;  // tickets of the waiting requests, oldest first
  uint64_t next_ticket_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace epserve
