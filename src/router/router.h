// epserve's router, after SGLang's (sgl-router): in PD mode each request goes at once to one
// prefill and one decode server, with bootstrap_host / bootstrap_port / bootstrap_room added so
// that they find each other, and the client gets decode's answer (a stream passes through as it
// arrives). In the plain mode (--worker-urls) each request goes to one worker. Workers are chosen
// by the policies among the available ones; failed attempts with a retryable status (408, 429,
// 500, 502, 503, 504) are retried on a freshly chosen pair with exponential backoff. In front of
// all that: the --api-key check and the concurrency limiter (router/concurrency_limiter.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "router/concurrency_limiter.h"
#include "router/http_client.h"
#include "router/policy.h"
#include "router/router_args.h"
#include "router/worker.h"
#include "server/http.h"

namespace epserve {

class Router {
 public:
  explicit Router(RouterArgs args);
  ~Router();

  // Waits until every worker answers GET /health (--worker-startup-timeout-secs); throws naming
  // those that do not. `sleep(seconds)` waits between rounds and returns false to give up (a
  // signal): then wait_for_workers returns false.
  bool wait_for_workers(const std::function<bool(int)>& sleep);
  // The health checker (and, for power_of_two, the load monitor) threads.
  void start_background();
  // --dp-aware, after wait_for_workers: asks each worker's GET /get_server_info for dp_size and
  // replaces it by dp_size workers "URL@RANK" (rank 0..dp_size-1), as SGLang's router does.
  // Throws naming a worker that does not answer or reports no dp_size.
  void expand_dp_aware();
  void stop_background();
  void register_routes(HttpServer& http);

  const RouterArgs& args() const { return args_; }

  // The bootstrap fields SGLang's router adds to a PD request (arrays of batch_size items when
  // batch_size > 0). Exposed for tests.
  static void inject_bootstrap(nlohmann::json& body, const Worker& prefill, size_t batch_size);

 private:
  struct Traits {
    bool stream = false;
    bool return_logprob = false;
    size_t batch_size = 0;  // 0: not a batch
    std::string text;       // what cache_aware matches on
  };
  static Traits request_traits(const std::string& route, const nlohmann::json& body);

  // The concurrency limiter around route_inference: 429 / 408 when no token comes; the token
  // goes back when the response (or its stream) is done.
  void route_limited(const std::string& route, const HttpRequest& req, HttpResponse& res);
  void route_inference(const std::string& route, const HttpRequest& req, HttpResponse& res);
  void dispatch_pd(const std::string& route, const nlohmann::json& body, const Traits& traits,
                   const std::vector<std::pair<std::string, std::string>>& headers,
                   HttpResponse& res);
  // `body` as the client sent it, and parsed: a --dp-aware worker gets `parsed` with its
  // data_parallel_rank set (as SGLang's router does, replacing the client's).
  void dispatch_regular(const std::string& route, const std::string& body,
                        const nlohmann::json& parsed, const Traits& traits,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        HttpResponse& res);
  // One of `workers` by `policy` among the available ones; nullptr and `why` when none is.
  std::shared_ptr<Worker> pick(const WorkerList& workers, Policy& policy, const char* kind,
                               const std::string& text, std::string& why);
  void proxy_get(const std::string& path, HttpResponse& res);
  void health_generate(HttpResponse& res);
  void readiness(HttpResponse& res);
  void flush_cache(HttpResponse& res);

  // A request to a worker: with --api-key it carries "Authorization: Bearer KEY".
  ClientRequest worker_request(const std::string& method, const std::string& path,
                               int timeout_s) const;
  // The client headers passed on to the workers (with --api-key, its Authorization replaced).
  std::vector<std::pair<std::string, std::string>> worker_headers(const HttpRequest& req) const;

  void health_loop();
  void load_monitor_loop();
  void check_health(Worker& worker);
  WorkerList all_workers() const;
  CircuitBreakerOptions breaker_options() const;
  int backoff_ms(int attempt) const;

  RouterArgs args_;
  WorkerList prefill_, decode_, regular_;
  std::unique_ptr<Policy> prefill_policy_, decode_policy_, policy_;
  std::shared_ptr<ConcurrencyLimiter> limiter_;  // null: --max-concurrent-requests <= 0

  std::mutex stop_mutex_;
  std::condition_variable stop_changed_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// `epserve router`: serves until SIGINT/SIGTERM. Returns the exit status.
int run_router(RouterArgs args);

}  // namespace epserve
