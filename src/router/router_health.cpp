// The router's background checks, as SGLang's router runs them: at start-up it waits for every
// worker to answer its health endpoint; then every --health-check-interval-secs each worker is
// checked (GET --health-check-endpoint within --health-check-timeout-secs), and a worker leaves
// the rotation after --health-failure-threshold consecutive failures and comes back after
// --health-success-threshold consecutive passes. With power_of_two, GET /get_load is polled
// every --worker-startup-check-interval seconds ({"load": N} as SGLang's router first read it, or
// today's list of DP ranks, whose num_tokens add up; a worker that does not answer it is compared
// by the requests the router has in flight there).
#include <chrono>
#include <future>

#include "core/error.h"
#include "core/log.h"
#include "router/http_client.h"
#include "router/router.h"

namespace epserve {

using json = nlohmann::json;

namespace {

bool health_ok(const std::string& url, ClientRequest req) {
  req.connect_timeout_ms = req.timeout_s * 1000;
  ClientResponse r = http_send(url, req);
  return r.status >= 200 && r.status < 300;
}

}  // namespace

bool Router::wait_for_workers(const std::function<bool(int)>& sleep) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(args_.worker_startup_timeout_secs);
  WorkerList pending = all_workers();
  spdlog::info("waiting for {} worker(s) to be healthy (up to {} s)", pending.size(),
               args_.worker_startup_timeout_secs);
  while (true) {
    WorkerList still;
    for (const auto& w : pending) {
      if (!health_ok(w->base_url,
                     worker_request("GET", "/health", args_.health_check_timeout_secs)))
        still.push_back(w);
    }
    pending = std::move(still);
    if (pending.empty()) return true;
    std::vector<std::string> urls;
    for (const auto& w : pending) urls.push_back(w->url);
    EPS_CHECK(std::chrono::steady_clock::now() < deadline,
              "workers not healthy after {} s (--worker-startup-timeout-secs): {}",
              args_.worker_startup_timeout_secs, fmt::join(urls, ", "));
    if (!sleep(args_.worker_startup_check_interval)) return false;
  }
}

void Router::check_health(Worker& w) {
  bool ok = health_ok(w.base_url, worker_request("GET", args_.health_check_endpoint,
                                                 args_.health_check_timeout_secs));
  if (ok) {
    w.health_failures = 0;
    ++w.health_successes;
    if (!w.healthy.load() && w.health_successes >= args_.health_success_threshold) {
      w.healthy = true;
      w.health_successes = 0;
      spdlog::info("{} worker {} is healthy again", worker_kind_name(w.kind), w.url);
    }
  } else {
    w.health_successes = 0;
    ++w.health_failures;
    if (w.healthy.load() && w.health_failures >= args_.health_failure_threshold) {
      w.healthy = false;
      w.health_failures = 0;
      spdlog::warn("{} worker {} failed {} health checks: out of rotation",
                   worker_kind_name(w.kind), w.url, args_.health_failure_threshold);
    }
  }
}

void Router::health_loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(stop_mutex_);
      if (stop_changed_.wait_for(lock, std::chrono::seconds(args_.health_check_interval_secs),
                                 [this] { return stopping_; })) {
        return;
      }
    }
    std::vector<std::future<void>> checks;
    for (const auto& w : all_workers()) {
      checks.push_back(std::async(std::launch::async, [this, w] { check_health(*w); }));
    }
    for (auto& c : checks) c.get();
  }
}

void Router::load_monitor_loop() {
  while (true) {
    for (const auto& w : all_workers()) {
      ClientRequest req = worker_request("GET", "/get_load", args_.health_check_timeout_secs);
      ClientResponse r = http_send(w->base_url, req);
      json body = r.status == 200 ? json::parse(r.body, nullptr, false) : json();
      int64_t load = -1;
      if (body.is_object() && body.contains("load") && body["load"].is_number_integer()) {
        load = body["load"].get<int64_t>();
      } else if (body.is_array()) {
        // SGLang's servers today: one entry per DP rank; the load is their tokens.
        load = 0;
        for (const auto& rank : body) {
          if (rank.is_object() && rank.contains("num_tokens") &&
              rank["num_tokens"].is_number_integer()) {
            load += rank["num_tokens"].get<int64_t>();
          }
        }
      }
      w->reported_load = load;
    }
    std::unique_lock<std::mutex> lock(stop_mutex_);
    if (stop_changed_.wait_for(lock, std::chrono::seconds(args_.worker_startup_check_interval),
                               [this] { return stopping_; })) {
      return;
    }
  }
}

void Router::start_background() {
  threads_.emplace_back([this] { health_loop(); });
  bool power_of_two = args_.pd_disaggregation
                          ? (std::string(prefill_policy_->name()) == "power_of_two" ||
                             std::string(decode_policy_->name()) == "power_of_two")
                          : std::string(policy_->name()) == "power_of_two";
  if (power_of_two) threads_.emplace_back([this] { load_monitor_loop(); });
}

void Router::stop_background() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stopping_ = true;
  }
  stop_changed_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace epserve
