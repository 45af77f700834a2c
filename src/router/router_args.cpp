#include "router/router_args.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "router/http_client.h"
#include "router/policy.h"

namespace epserve {

namespace {

// SGLang router flags epserve refuses, with why.
const std::vector<std::pair<std::string, std::string>>& refused_flags() {
  static const std::vector<std::pair<std::string, std::string>> flags = {
      {"mini-lb", "the Python mini load balancer is not part of epserve"},
      {"enable-igw", "the multi-model gateway mode is not implemented"},
      {"log-dir", "the router logs to stderr only"},
      {"service-discovery", "Kubernetes service discovery is not implemented"},
      {"selector", "Kubernetes service discovery is not implemented"},
      {"service-discovery-port", "Kubernetes service discovery is not implemented"},
      {"service-discovery-namespace", "Kubernetes service discovery is not implemented"},
      {"prefill-selector", "Kubernetes service discovery is not implemented"},
      {"decode-selector", "Kubernetes service discovery is not implemented"},
      {"prometheus-port", "the router has no Prometheus endpoint"},
      {"prometheus-host", "the router has no Prometheus endpoint"},
      {"request-id-headers", "custom request-id headers are not implemented"},
      {"cors-allowed-origins", "CORS is not implemented"},
      {"model-path", "the router does not tokenize (HTTP routing only)"},
      {"tokenizer-path", "the router does not tokenize (HTTP routing only)"},
      {"backend", "only SGLang-style HTTP workers are supported"},
      {"history-backend", "conversation history is not implemented"},
  };
  return flags;
}

const std::vector<std::string> kPolicies = {"random", "round_robin", "cache_aware", "power_of_two"};

std::optional<int> parse_bootstrap_port(const std::string& text, const std::string& url) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (lower == "none") return std::nullopt;
  size_t used = 0;
  int port = -1;
  try {
    port = std::stoi(text, &used);
  } catch (const std::exception&) {
  }
  EPS_CHECK(used == text.size() && port > 0 && port < 65536,
            "--prefill {} {}: invalid bootstrap port '{}'; it must be a number or 'none'", url,
            text, text);
  return port;
}

void check_positive(int value, const char* flag) {
  EPS_CHECK(value > 0, "{} must be positive (got {})", flag, value);
}

}  // namespace

void add_router_args(CLI::App& sub, RouterArgs& a) {
  // As with argparse, a flag given twice keeps its last value; --prefill and --decode add up.
  sub.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  sub.add_option("--host", a.host, "Host address to bind the router server")->capture_default_str();
  sub.add_option("--port", a.port, "Port number to bind the router server")->capture_default_str();
  sub.add_option("--worker-urls", a.worker_urls,
                 "Worker URLs for the plain (non-disaggregated) mode")
      ->expected(0, -1);
  sub.add_flag("--pd-disaggregation", a.pd_disaggregation,
               "Enable PD (prefill-decode) disaggregated mode");
  sub.add_option("--prefill", a.prefill_raw,
                 "Prefill server URL and optional bootstrap port (a number or 'none'); repeatable")
      ->expected(1, 2)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->type_name("URL [BOOTSTRAP_PORT]");
  sub.add_option("--decode", a.decode_urls, "Decode server URL; repeatable")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->type_name("URL");
  sub.add_option("--policy", a.policy,
                 "Load-balancing policy; in PD mode for both sides unless overridden")
      ->capture_default_str()
      ->check(CLI::IsMember(kPolicies));
  sub.add_option("--prefill-policy", a.prefill_policy, "Policy for the prefill servers in PD mode")
      ->check(CLI::IsMember(kPolicies));
  sub.add_option("--decode-policy", a.decode_policy, "Policy for the decode servers in PD mode")
      ->check(CLI::IsMember(kPolicies));
  sub.add_option("--cache-threshold", a.cache_aware.cache_threshold,
                 "cache_aware: the prefix match ratio above which the matching worker is chosen")
      ->capture_default_str();
  sub.add_option("--balance-abs-threshold", a.cache_aware.balance_abs_threshold,
                 "cache_aware: loads are imbalanced when max - min exceeds this ...")
      ->capture_default_str();
  sub.add_option("--balance-rel-threshold", a.cache_aware.balance_rel_threshold,
                 "cache_aware: ... and max exceeds min times this")
      ->capture_default_str();
  sub.add_option("--eviction-interval-secs", a.cache_aware.eviction_interval_secs,
                 "cache_aware: seconds between evictions of least recently used tree leaves")
      ->capture_default_str();
  sub.add_option("--max-tree-size", a.cache_aware.max_tree_size,
                 "cache_aware: characters per worker kept in the tree")
      ->capture_default_str();
  sub.add_option("--worker-startup-timeout-secs", a.worker_startup_timeout_secs,
                 "How long to wait at start-up for every worker to be healthy")
      ->capture_default_str();
  sub.add_option("--worker-startup-check-interval", a.worker_startup_check_interval,
                 "Seconds between start-up health checks (also the power_of_two load poll)")
      ->capture_default_str();
  sub.add_option("--max-payload-size", a.max_payload_size, "Maximum request body in bytes")
      ->capture_default_str();
  sub.add_option("--request-timeout-secs", a.request_timeout_secs,
                 "Timeout of one request to a worker, in seconds")
      ->capture_default_str();
  sub.add_option("--retry-max-retries", a.retry_max_retries,
                 "Attempts per request (the first included)")
      ->capture_default_str();
  sub.add_option("--retry-initial-backoff-ms", a.retry_initial_backoff_ms)->capture_default_str();
  sub.add_option("--retry-max-backoff-ms", a.retry_max_backoff_ms)->capture_default_str();
  sub.add_option("--retry-backoff-multiplier", a.retry_backoff_multiplier)->capture_default_str();
  sub.add_option("--retry-jitter-factor", a.retry_jitter_factor)->capture_default_str();
  sub.add_flag("--disable-retries", a.disable_retries, "One attempt per request");
  sub.add_flag("--dp-aware", a.dp_aware,
               "Route to each worker's DP ranks: a worker per rank (dp_size from "
               "/get_server_info), data_parallel_rank added to each request");
  sub.add_option("--cb-failure-threshold", a.cb_failure_threshold)->capture_default_str();
  sub.add_option("--cb-success-threshold", a.cb_success_threshold)->capture_default_str();
  sub.add_option("--cb-timeout-duration-secs", a.cb_timeout_duration_secs)->capture_default_str();
  sub.add_option("--cb-window-duration-secs", a.cb_window_duration_secs,
                 "Accepted; SGLang's circuit breaker does not use it either")
      ->capture_default_str();
  sub.add_flag("--disable-circuit-breaker", a.disable_circuit_breaker);
  sub.add_option("--health-failure-threshold", a.health_failure_threshold,
                 "Consecutive failed health checks that take a worker out of rotation")
      ->capture_default_str();
  sub.add_option("--health-success-threshold", a.health_success_threshold,
                 "Consecutive passed health checks that bring it back")
      ->capture_default_str();
  sub.add_option("--health-check-timeout-secs", a.health_check_timeout_secs)->capture_default_str();
  sub.add_option("--health-check-interval-secs", a.health_check_interval_secs)
      ->capture_default_str();
  sub.add_option("--health-check-endpoint", a.health_check_endpoint)->capture_default_str();
  sub.add_option("--max-concurrent-requests", a.max_concurrent_requests,
                 "Token bucket size: requests admitted at once before queuing (<= 0: no limit)")
      ->capture_default_str();
  sub.add_option("--queue-size", a.queue_size,
                 "Requests that may wait for a token (0: answer 429 at once)")
      ->capture_default_str();
  sub.add_option("--queue-timeout-secs", a.queue_timeout_secs,
                 "Longest wait in the queue before a 408")
      ->capture_default_str();
  sub.add_option("--rate-limit-tokens-per-second", a.rate_limit_tokens_per_second,
                 "Token bucket refill rate (default: --max-concurrent-requests per second)");
  sub.add_option("--api-key", a.api_key,
                 "Key the workers expect (sent as 'Authorization: Bearer KEY'); clients must send "
                 "it too on the inference routes and /flush_cache");
  sub.add_option("--log-level", a.log_level)
      ->check(CLI::IsMember({"debug", "info", "warning", "error", "critical"}))
      ->capture_default_str();
}

void resolve_router_args(RouterArgs& a, const std::vector<std::string>& extras) {
  std::vector<std::string> problems;
  for (size_t i = 0; i < extras.size(); ++i) {
    const std::string& arg = extras[i];
    if (arg.rfind("--", 0) != 0) {
      problems.push_back("unexpected argument '" + arg + "'");
      continue;
    }
    std::string name =
        arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
    auto it = std::find_if(refused_flags().begin(), refused_flags().end(),
                           [&](const auto& f) { return f.first == name; });
    if (it != refused_flags().end()) {
      problems.push_back("--" + name + " is an SGLang router flag that epserve does not " +
                         "implement (" + it->second + "); remove it");
    } else {
      problems.push_back("unknown flag --" + name + " (epserve router --help lists the flags)");
    }
    while (arg.find('=') == std::string::npos && i + 1 < extras.size() &&
           extras[i + 1].rfind("--", 0) != 0) {
      ++i;  // its values
    }
  }
  EPS_CHECK(problems.empty(), "{}", fmt::join(problems, "; "));

  if (a.pd_disaggregation) {
    EPS_CHECK(!a.prefill_raw.empty(), "PD disaggregation mode requires --prefill");
    EPS_CHECK(!a.decode_urls.empty(), "PD disaggregation mode requires --decode");
    EPS_CHECK(a.worker_urls.empty(),
              "--worker-urls is for the plain mode; with --pd-disaggregation give --prefill and "
              "--decode");
    EPS_CHECK(!a.dp_aware,
              "--dp-aware with --pd-disaggregation is not implemented (plain mode only); the "
              "prefill and decode servers balance their DP groups themselves");
  } else {
    EPS_CHECK(a.prefill_raw.empty() && a.decode_urls.empty(),
              "--prefill and --decode need --pd-disaggregation");
    EPS_CHECK(!a.worker_urls.empty(),
              "give --worker-urls (plain mode) or --pd-disaggregation with --prefill and --decode "
              "(workers cannot be added at run time)");
  }
  a.prefill.clear();
  for (const auto& group : a.prefill_raw) {
    PrefillServer p;
    p.url = group.at(0);
    if (group.size() >= 2) p.bootstrap_port = parse_bootstrap_port(group[1], p.url);
    a.prefill.push_back(std::move(p));
  }
  for (const auto& p : a.prefill) parse_worker_url(p.url);
  for (const auto& url : a.decode_urls) parse_worker_url(url);
  for (const auto& url : a.worker_urls) parse_worker_url(url);

  EPS_CHECK(a.cache_aware.cache_threshold >= 0 && a.cache_aware.cache_threshold <= 1,
            "--cache-threshold must be in [0, 1] (got {})", a.cache_aware.cache_threshold);
  EPS_CHECK(a.cache_aware.balance_abs_threshold >= 0 && a.cache_aware.balance_rel_threshold >= 0 &&
                a.cache_aware.eviction_interval_secs >= 0 && a.cache_aware.max_tree_size >= 0,
            "--balance-abs-threshold, --balance-rel-threshold, --eviction-interval-secs and "
            "--max-tree-size must not be negative");
  EPS_CHECK(a.pd_disaggregation || (a.prefill_policy.empty() && a.decode_policy.empty()),
            "--prefill-policy and --decode-policy are for --pd-disaggregation");

  check_positive(a.port, "--port");
  check_positive(a.worker_startup_timeout_secs, "--worker-startup-timeout-secs");
  check_positive(a.worker_startup_check_interval, "--worker-startup-check-interval");
  EPS_CHECK(a.max_payload_size > 0, "--max-payload-size must be positive");
  check_positive(a.request_timeout_secs, "--request-timeout-secs");
  EPS_CHECK(a.retry_max_retries >= 0 && a.retry_initial_backoff_ms >= 0 &&
                a.retry_max_backoff_ms >= 0 && a.retry_backoff_multiplier > 0,
            "the --retry-* values must not be negative (and the multiplier positive)");
  check_positive(a.cb_failure_threshold, "--cb-failure-threshold");
  check_positive(a.cb_success_threshold, "--cb-success-threshold");
  check_positive(a.health_failure_threshold, "--health-failure-threshold");
  check_positive(a.health_success_threshold, "--health-success-threshold");
  check_positive(a.health_check_timeout_secs, "--health-check-timeout-secs");
  check_positive(a.health_check_interval_secs, "--health-check-interval-secs");
  EPS_CHECK(a.queue_size >= 0, "--queue-size must not be negative (got {})", a.queue_size);
  EPS_CHECK(a.queue_timeout_secs >= 0, "--queue-timeout-secs must not be negative (got {})",
            a.queue_timeout_secs);
  EPS_CHECK(!a.health_check_endpoint.empty() && a.health_check_endpoint[0] == '/',
            "--health-check-endpoint must start with / (got '{}')", a.health_check_endpoint);
}

std::vector<std::string> refused_router_flag_names() {
  std::vector<std::string> names;
  for (const auto& f : refused_flags()) names.push_back("--" + f.first);
  return names;
}

}  // namespace epserve
