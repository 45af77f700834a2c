#include "router/concurrency_limiter.h"

#include <algorithm>

namespace epserve {

TokenBucket::TokenBucket(double capacity, double refill_per_second, double now_s)
    : capacity_(capacity),
      refill_per_second_(refill_per_second),
      tokens_(capacity),
      last_s_(now_s) {}

void TokenBucket::refill(double now_s) {
  if (now_s > last_s_) {
    tokens_ = std::min(capacity_, tokens_ + (now_s - last_s_) * refill_per_second_);
    last_s_ = now_s;
  }
}

bool TokenBucket::try_take(double now_s) {
  refill(now_s);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

void TokenBucket::give_back() {
  tokens_ = std::min(capacity_, tokens_ + 1.0);
}

double TokenBucket::seconds_until_token(double now_s) {
  refill(now_s);
  if (tokens_ >= 1.0) return 0.0;
  return (1.0 - tokens_) / refill_per_second_;
}

ConcurrencyLimiter::ConcurrencyLimiter(int max_concurrent_requests, int refill_per_second,
                                       int queue_size, double queue_timeout_s)
    : bucket_(max_concurrent_requests,
              refill_per_second > 0 ? refill_per_second : max_concurrent_requests, 0.0),
      queue_size_(queue_size),
      queue_timeout_s_(queue_timeout_s) {}

double ConcurrencyLimiter::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

Admission ConcurrencyLimiter::acquire() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mutex_);
  // Requests already waiting go first.
  if (queue_.empty() && bucket_.try_take(now_s())) return Admission::admitted;
  if (queue_size_ <= 0 || static_cast<int>(queue_.size()) >= queue_size_) {
    return Admission::queue_full;
  }
  const uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(queue_timeout_s_));
  for (;;) {
    const bool first = queue_.front() == ticket;
    if (first && bucket_.try_take(now_s())) {
      queue_.pop_front();
      changed_.notify_all();  // the next one is now first
      return Admission::admitted;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
      changed_.notify_all();
      return Admission::queue_timeout;
    }
    auto wake = deadline;
    if (first) {
      // The refill brings a token by then, unless a finished request gives one back sooner.
      wake = std::min(
          deadline, now + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(bucket_.seconds_until_token(now_s()))));
    }
    changed_.wait_until(lock, wake);
  }
}

void ConcurrencyLimiter::release() {
  std::lock_guard lock(mutex_);
  bucket_.give_back();
  changed_.notify_all();
}

int ConcurrencyLimiter::queued() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(queue_.size());
}

}  // namespace epserve
