// The servers behind the router, as SGLang's router keeps them: each worker has a URL, a kind
// (regular, prefill with its bootstrap port, decode), a health flag that the health checker sets
// after N consecutive failed or passed checks, a circuit breaker fed by request outcomes, and a
// load (requests the router has in flight there; a power_of_two load monitor may report another).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace epserve {

enum class WorkerKind { regular, prefill, decode };

struct CircuitBreakerOptions {
  int failure_threshold = 10;  // consecutive failed requests that open the circuit
  int success_threshold = 3;   // successes in half-open that close it
  int timeout_s = 60;          // open -> half-open after this long
  bool disabled = false;
};

// SGLang's circuit breaker: closed -> open after failure_threshold consecutive failures;
// open -> half-open after timeout_s; half-open -> closed after success_threshold successes, or
// back to open on one failure.
class CircuitBreaker {
 public:
  explicit CircuitBreaker(CircuitBreakerOptions options) : options_(options) {}
  bool can_execute();
  void record(bool success);
  std::string state_name();

 private:
  enum class State { closed, open, half_open };
  void update_locked();
  void transition_locked(State next);

  CircuitBreakerOptions options_;
  std::mutex mutex_;
  State state_ = State::closed;
  int consecutive_failures_ = 0;
  int consecutive_successes_ = 0;
  std::chrono::steady_clock::time_point last_change_ = std::chrono::steady_clock::now();
};

struct Worker {
  // `dp_rank` >= 0: one DP rank of the server at `url` (--dp-aware), named "URL@RANK" as in
  // SGLang's router.
  Worker(std::string url, WorkerKind kind, std::optional<int> bootstrap_port,
         CircuitBreakerOptions breaker, int dp_rank = -1)
      : url(dp_rank >= 0 ? url + "@" + std::to_string(dp_rank) : url),
        base_url(std::move(url)),
        kind(kind),
        dp_rank(dp_rank),
        bootstrap_port(bootstrap_port),
        breaker(breaker) {}

  const std::string url;       // the worker's name (logs, messages)
  const std::string base_url;  // where its requests go
  const WorkerKind kind;
  const int dp_rank;  // -1: the whole server; else sent as data_parallel_rank with each request
  const std::optional<int> bootstrap_port;  // prefill only; nullopt is sent as null

  std::atomic<bool> healthy{true};
  std::atomic<int64_t> load{0};            // requests in flight through the router
  std::atomic<int64_t> reported_load{-1};  // from the load monitor's GET /get_load; -1: none
  CircuitBreaker breaker;
  // Health checker's counters (its thread only).
  int health_successes = 0;
  int health_failures = 0;

  bool available() { return healthy.load() && breaker.can_execute(); }
};

using WorkerList = std::vector<std::shared_ptr<Worker>>;

// Keeps a worker's load raised while a request is in flight there.
class LoadGuard {
 public:
  LoadGuard() = default;
  explicit LoadGuard(std::vector<std::shared_ptr<Worker>> workers);
  ~LoadGuard();
  LoadGuard(LoadGuard&& other) noexcept : workers_(std::move(other.workers_)) {}
  LoadGuard& operator=(LoadGuard&&) = delete;
  LoadGuard(const LoadGuard&) = delete;

 private:
  std::vector<std::shared_ptr<Worker>> workers_;
};

// The host part of a worker URL, as SGLang's router sends it in bootstrap_host.
std::string worker_hostname(const std::string& url);

const char* worker_kind_name(WorkerKind kind);

}  // namespace epserve
