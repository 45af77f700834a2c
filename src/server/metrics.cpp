#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace epserve {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void sample(std::string& out, const std::string& name, const std::string& labels, double v) {
  out += fmt::format("{}{{{}}} {}\n", name, labels, number(v));
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value, uint64_t times) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i] += times;
  sum_ += value * static_cast<double>(times);
  count_ += times;
}

bool Histogram::add(const std::vector<uint64_t>& per_bucket, double sum) {
  if (per_bucket.size() != counts_.size()) return false;
  for (size_t i = 0; i < per_bucket.size(); ++i) {
    counts_[i] += per_bucket[i];
    count_ += per_bucket[i];
  }
  sum_ += sum;
  return true;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, le, cumulative);
  }
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, number(sum_));
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

std::string prometheus_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

Metrics::Metrics(std::string model_name)
    : labels_("model_name=\"" + prometheus_escape(model_name) + "\""),
      time_to_first_token_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                            25, 50, 100, 250}),
      inter_token_latency_({0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01,
                            0.015,  0.02,  0.03,  0.04,  0.06,  0.08,  0.1,
                            0.2,    0.4,   0.8,   1,     2,     4,     8}),
      e2e_request_latency_(
          {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000}),
      kv_transfer_latency_ms_(
          {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}),
      kv_transfer_total_mb_({0.01, 0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000}) {}

void Metrics::kv_transfer(int64_t bytes, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  kv_transfer_bytes_ += static_cast<uint64_t>(std::max<int64_t>(bytes, 0));
  kv_transfer_latency_ms_.observe(seconds * 1000);
  kv_transfer_total_mb_.observe(static_cast<double>(bytes) / 1e6);
  if (seconds > 0) kv_transfer_speed_gb_s_ = static_cast<double>(bytes) / 1e9 / seconds;
}

void Metrics::kv_transfer_failed() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++kv_transfers_failed_;
}

void Metrics::request_finished(const std::string& finish_reason, int64_t prompt_tokens,
                               int64_t completion_tokens, int64_t cached_tokens,
                               double e2e_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_;
  if (finish_reason == "abort") ++aborted_requests_;
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(prompt_tokens, 0));
  cached_tokens_ += static_cast<uint64_t>(std::max<int64_t>(cached_tokens, 0));
  (void)completion_tokens;  // counted as they arrive (next_tokens / first_token callers)
  e2e_request_latency_.observe(e2e_seconds);
}

void Metrics::first_token(double seconds_since_arrival) {
  std::lock_guard<std::mutex> lock(mutex_);
  time_to_first_token_.observe(seconds_since_arrival);
}

void Metrics::next_tokens(int64_t tokens, double interval_seconds) {
  if (tokens <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  generation_tokens_ += static_cast<uint64_t>(tokens);
  if (interval_seconds >= 0) {
    inter_token_latency_.observe(interval_seconds / static_cast<double>(tokens),
                                 static_cast<uint64_t>(tokens));
  }
}

std::string Metrics::render(const std::vector<nlohmann::json>& scheduler_stats) const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    header(out, "sglang:num_requests_total", "counter", "Finished requests.");
    sample(out, "sglang:num_requests_total", labels_, static_cast<double>(requests_));
    header(out, "sglang:num_aborted_requests_total", "counter",
           "Requests that ended aborted (client gone, error, shutdown).");
    sample(out, "sglang:num_aborted_requests_total", labels_,
           static_cast<double>(aborted_requests_));
    header(out, "sglang:prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
    sample(out, "sglang:prompt_tokens_total", labels_, static_cast<double>(prompt_tokens_));
    header(out, "sglang:generation_tokens_total", "counter", "Generated tokens.");
    sample(out, "sglang:generation_tokens_total", labels_, static_cast<double>(generation_tokens_));
    header(out, "sglang:cached_tokens_total", "counter",
           "Prompt tokens served from the prefix cache.");
    sample(out, "sglang:cached_tokens_total", labels_, static_cast<double>(cached_tokens_));
    header(out, "sglang:time_to_first_token_seconds", "histogram",
           "Time from a request's arrival to its first output token.");
    time_to_first_token_.render(out, "sglang:time_to_first_token_seconds", labels_);
    header(out, "sglang:inter_token_latency_seconds", "histogram",
           "Time between consecutive output tokens of a request.");
    inter_token_latency_.render(out, "sglang:inter_token_latency_seconds", labels_);
    header(out, "sglang:e2e_request_latency_seconds", "histogram",
           "Time from a request's arrival to its last output.");
    e2e_request_latency_.render(out, "sglang:e2e_request_latency_seconds", labels_);
    if (kv_transfer_latency_ms_.count() > 0 || kv_transfers_failed_ > 0) {
      header(out, "sglang:kv_transfer_latency_ms", "histogram",
             "KV transfer time per request (prefill: puts to remote completion; decode: from "
             "pages reserved to KV received).");
      kv_transfer_latency_ms_.render(out, "sglang:kv_transfer_latency_ms", labels_);
      header(out, "sglang:kv_transfer_total_mb", "histogram", "KV bytes per request, in MB.");
      kv_transfer_total_mb_.render(out, "sglang:kv_transfer_total_mb", labels_);
      header(out, "sglang:kv_transfer_bytes_total", "counter", "KV bytes transferred.");
      sample(out, "sglang:kv_transfer_bytes_total", labels_,
             static_cast<double>(kv_transfer_bytes_));
      header(out, "sglang:kv_transfer_failed_total", "counter", "KV transfers that failed.");
      sample(out, "sglang:kv_transfer_failed_total", labels_,
             static_cast<double>(kv_transfers_failed_));
      if (kv_transfer_speed_gb_s_ >= 0) {
        header(out, "sglang:kv_transfer_speed_gb_s", "gauge", "The latest KV transfer's speed.");
        sample(out, "sglang:kv_transfer_speed_gb_s", labels_, kv_transfer_speed_gb_s_);
      }
    }
  }
  // Scheduler gauges, summed over DP groups.
  struct Gauge {
    const char* key;
    const char* name;
    const char* help;
  };
  const Gauge gauges[] = {
      {"num_running_reqs", "sglang:num_running_reqs", "Requests in the running batch."},
      {"num_queue_reqs", "sglang:num_queue_reqs", "Requests waiting to be scheduled."},
      {"kv_used_tokens", "sglang:num_used_tokens", "KV cache tokens held by requests."},
      {"kv_total_tokens", "sglang:max_total_num_tokens", "KV cache size in tokens."},
      {"num_prefill_inflight_queue_reqs", "sglang:num_prefill_inflight_queue_reqs",
       "Prefill: computed requests waiting to send their KV."},
      {"num_decode_prealloc_queue_reqs", "sglang:num_decode_prealloc_queue_reqs",
       "Decode: requests waiting for KV pages."},
      {"num_decode_transfer_queue_reqs", "sglang:num_decode_transfer_queue_reqs",
       "Decode: requests waiting for their KV."},
  };
  double used = 0, total = 0;
  for (const Gauge& g : gauges) {
    double value = 0;
    bool any = false;
    for (const auto& s : scheduler_stats) {
      if (s.is_object() && s.contains(g.key) && s[g.key].is_number()) {
        value += s[g.key].get<double>();
        any = true;
      }
    }
    if (!any) continue;
    header(out, g.name, "gauge", g.help);
    sample(out, g.name, labels_, value);
    if (std::string(g.key) == "kv_used_tokens") used = value;
    if (std::string(g.key) == "kv_total_tokens") total = value;
  }
  if (total > 0) {
    header(out, "sglang:token_usage", "gauge", "Fraction of the KV cache held by requests.");
    sample(out, "sglang:token_usage", labels_, used / total);
  }
  // Decode server (PD): the handoff latency, summed over DP groups (scheduler_handoff.cpp).
  std::optional<Histogram> handoff;
  for (const auto& s : scheduler_stats) {
    if (!s.is_object() || !s.contains("pd_handoff_latency")) continue;
    const nlohmann::json& h = s["pd_handoff_latency"];
    try {
      if (!handoff) handoff.emplace(h.at("bounds").get<std::vector<double>>());
      handoff->add(h.at("counts").get<std::vector<uint64_t>>(), h.at("sum").get<double>());
    } catch (const nlohmann::json::exception&) {
    }
  }
  if (handoff) {
    header(out, "epserve:pd_handoff_latency_seconds", "histogram",
           "Decode server (PD): per request, from the prefill server's answer (KV flushed into "
           "this server's pages, first token sampled) reaching this server to the start of the "
           "request's first decode step.");
    handoff->render(out, "epserve:pd_handoff_latency_seconds", labels_);
  }
  // Expert load figures are world-wide (every group reports the same): the first group's.
  const Gauge world_gauges[] = {
      {"expert_balancedness", "epserve:expert_balancedness",
       "Mean over MoE layers of mean / max rank load, last forward pass (1 = perfect)."},
      {"expert_balancedness_mean", "epserve:expert_balancedness_mean",
       "The same, averaged over the passes since recording started or the last dump."},
      {"eplb_rebalances", "epserve:eplb_rebalances_total", "EPLB placements planned."},
      {"eplb_layers_moved", "epserve:eplb_layers_moved_total",
       "MoE layers switched to a new placement by EPLB."},
      {"eplb_chunks_failed", "epserve:eplb_chunks_failed_total",
       "EPLB chunks dropped because a rank failed (the old placement stayed)."},
  };
  for (const Gauge& g : world_gauges) {
    for (const auto& s : scheduler_stats) {
      if (!s.is_object() || !s.contains(g.key) || !s[g.key].is_number()) continue;
      const bool counter = std::string(g.name).ends_with("_total");
      header(out, g.name, counter ? "counter" : "gauge", g.help);
      sample(out, g.name, labels_, s[g.key].get<double>());
      break;
    }
  }
  return out;
}

}  // namespace epserve
