// Prometheus metrics of the server (GET /metrics, text exposition format 0.0.4). Names follow
// SGLang's (sglang:...) so that dashboards built for SGLang work unchanged. Counters and latency
// histograms are kept here, updated by the frontend as outputs arrive; the scheduler gauges
// (queue, running batch, KV usage) come from the schedulers' get_stats answers at scrape time.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value, uint64_t times = 1);
  // Adds another histogram's per-bucket counts (one more than the bounds: the last is past them)
  // and sum; false, adding nothing, when the shapes differ.
  bool add(const std::vector<uint64_t>& per_bucket, double sum);
  // Appends the _bucket/_sum/_count lines of `name` with the label text `labels` ("k=\"v\"").
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  void request_finished(const std::string& finish_reason, int64_t prompt_tokens,
                        int64_t completion_tokens, int64_t cached_tokens, double e2e_seconds);
  void first_token(double seconds_since_arrival);
  // `tokens` new tokens arrived `interval_seconds` after the previous ones of the same request.
  void next_tokens(int64_t tokens, double interval_seconds);

  // PD disaggregation: one request's KV transfer (prefill: sent; decode: received), or a failed
  // one.
  void kv_transfer(int64_t bytes, double seconds);
  void kv_transfer_failed();

  // The exposition text; `scheduler_stats` holds one get_stats result per DP group (missing
  // keys are skipped).
  std::string render(const std::vector<nlohmann::json>& scheduler_stats) const;

 private:
  mutable std::mutex mutex_;
  std::string labels_;
  uint64_t requests_ = 0;
  uint64_t aborted_requests_ = 0;
  uint64_t prompt_tokens_ = 0;
  uint64_t generation_tokens_ = 0;
  uint64_t cached_tokens_ = 0;
  Histogram time_to_first_token_;
  Histogram inter_token_latency_;
  Histogram e2e_request_latency_;
  uint64_t kv_transfer_bytes_ = 0;
  uint64_t kv_transfers_failed_ = 0;
  double kv_transfer_speed_gb_s_ = -1;  // the latest transfer's; -1: none yet
  Histogram kv_transfer_latency_ms_;
  Histogram kv_transfer_total_mb_;
};

// Escapes a Prometheus label value (backslash, double quote, newline).
std::string prometheus_escape(const std::string& value);

}  // namespace epserve
