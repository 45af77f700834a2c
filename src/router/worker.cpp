#include "router/worker.h"

#include "core/log.h"

namespace epserve {

bool CircuitBreaker::can_execute() {
  if (options_.disabled) return true;
  std::lock_guard<std::mutex> lock(mutex_);
  update_locked();
  return state_ != State::open;
}

void CircuitBreaker::record(bool success) {
  if (options_.disabled) return;
  std::lock_guard<std::mutex> lock(mutex_);
  update_locked();
  if (success) {
    consecutive_failures_ = 0;
    ++consecutive_successes_;
    if (state_ == State::half_open && consecutive_successes_ >= options_.success_threshold) {
      transition_locked(State::closed);
    }
  } else {
    consecutive_successes_ = 0;
    ++consecutive_failures_;
    if (state_ == State::half_open ||
        (state_ == State::closed && consecutive_failures_ >= options_.failure_threshold)) {
      transition_locked(State::open);
    }
  }
}

std::string CircuitBreaker::state_name() {
  if (options_.disabled) return "disabled";
  std::lock_guard<std::mutex> lock(mutex_);
  update_locked();
  switch (state_) {
    case State::closed:
      return "closed";
    case State::open:
      return "open";
    default:
      return "half_open";
  }
}

void CircuitBreaker::update_locked() {
  if (state_ == State::open &&
      std::chrono::steady_clock::now() - last_change_ >= std::chrono::seconds(options_.timeout_s)) {
    transition_locked(State::half_open);
  }
}

void CircuitBreaker::transition_locked(State next) {
  if (next == state_) return;
  state_ = next;
  last_change_ = std::chrono::steady_clock::now();
  if (next != State::open) consecutive_failures_ = 0;
  consecutive_successes_ = 0;
}

LoadGuard::LoadGuard(std::vector<std::shared_ptr<Worker>> workers) : workers_(std::move(workers)) {
  for (auto& w : workers_) ++w->load;
}

LoadGuard::~LoadGuard() {
  for (auto& w : workers_) {
    // Never below zero, even if another thread reset or lowered the count meanwhile.
    auto seen = w->load.load();
    while (seen > 0 && !w->load.compare_exchange_weak(seen, seen - 1)) {
    }
  }
}

std::string worker_hostname(const std::string& url) {
  std::string rest = url;
  for (const char* scheme : {"http://", "https://"}) {
    if (rest.rfind(scheme, 0) == 0) rest = rest.substr(std::string(scheme).size());
  }
  size_t open = rest.find('[');
  size_t close = rest.find(']');
  if (open != std::string::npos && close != std::string::npos && close > open) {
    return rest.substr(open + 1, close - open - 1);
  }
  return rest.substr(0, rest.find(':'));
}

const char* worker_kind_name(WorkerKind kind) {
  switch (kind) {
    case WorkerKind::prefill:
      return "prefill";
    case WorkerKind::decode:
      return "decode";
    default:
      return "regular";
  }
}

}  // namespace epserve
