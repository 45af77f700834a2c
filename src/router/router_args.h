// `epserve router`: SGLang router's flags (sglang_router.launch_router), their defaults, and the
// check that refuses what epserve's router does not do.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "router/cache_aware.h"

namespace epserve {

struct PrefillServer {
  std::string url;
  std::optional<int> bootstrap_port;  // none: sent as null (the server uses its own default)
};

struct RouterArgs {
  std::string host = "127.0.0.1";
  int port = 30000;
  std::vector<std::string> worker_urls;
  bool pd_disaggregation = false;
  std::vector<std::vector<std::string>> prefill_raw;  // --prefill URL [BOOTSTRAP_PORT], repeated
  std::vector<std::string> decode_urls;
  std::vector<PrefillServer> prefill;  // resolved from prefill_raw

  std::string policy = "cache_aware";
  std::string prefill_policy;
  std::string decode_policy;
  CacheAwareOptions cache_aware;  // --cache-threshold, --balance-*, --eviction-interval-secs, ...

  int worker_startup_timeout_secs = 600;
  int worker_startup_check_interval = 30;
  int64_t max_payload_size = 512LL * 1024 * 1024;
  int request_timeout_secs = 1800;

  int retry_max_retries = 5;
  int retry_initial_backoff_ms = 50;
  int retry_max_backoff_ms = 30000;
  double retry_backoff_multiplier = 1.5;
  double retry_jitter_factor = 0.2;
  bool disable_retries = false;

  int cb_failure_threshold = 10;
  int cb_success_threshold = 3;
  int cb_timeout_duration_secs = 60;
  int cb_window_duration_secs = 120;
  bool disable_circuit_breaker = false;

  int health_failure_threshold = 3;
  int health_success_threshold = 2;
  int health_check_timeout_secs = 5;
  int health_check_interval_secs = 60;
  std::string health_check_endpoint = "/health";

  // The concurrency limiter (SGLang's defaults; max_concurrent_requests <= 0 turns it off, a
  // rate <= 0 means max_concurrent_requests tokens per second).
  int max_concurrent_requests = 256;
  int queue_size = 100;
  int queue_timeout_secs = 60;
  int rate_limit_tokens_per_second = 0;

  // Sent to the workers as "Authorization: Bearer KEY", and required from clients on the
  // inference routes and /flush_cache (401 otherwise), as in SGLang's router.
  std::string api_key;

  // SGLang's --dp-aware: each worker stands for its dp_size DP ranks (GET /get_server_info at
  // start-up), and each request names its rank in data_parallel_rank. Plain mode only.
  bool dp_aware = false;

  std::string log_level = "info";
};

// `sub` must allow extras: SGLang router flags epserve does not implement land there and are
// refused by resolve_router_args.
void add_router_args(CLI::App& sub, RouterArgs& args);

// Checks the flags (and the extras CLI11 left), fills `prefill`, picks the policies. Throws
// epserve::Error with one line saying what to fix.
void resolve_router_args(RouterArgs& args, const std::vector<std::string>& extras);

// The router's flags SGLang has and epserve refuses (for abbreviation matching).
std::vector<std::string> refused_router_flag_names();

}  // namespace epserve
