// PD disaggregation, decode side: the handoff latency, from the prefill server's answer reaching
// this server (the KV is in the reserved pages, flushed, and the first token sampled; the relay
// in disagg/service.cpp stamps it) to the start of the request's first decode step. Exposed on
// /metrics as epserve:pd_handoff_latency_seconds (server/metrics.cpp).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/scheduler.h"

namespace epserve {

namespace {

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

const std::vector<double>& HandoffLatency::bounds() {
  static const std::vector<double> b = [] {
    std::vector<double> v;
    for (int i = 0; i < 30; ++i) v.push_back(0.001 * std::pow(1.62, i));
    return v;
  }();
  return b;
}

void HandoffLatency::observe(double seconds) {
  seconds = std::max(seconds, 0.0);  // the relay may run on another node's clock
  const auto& b = bounds();
  counts[std::lower_bound(b.begin(), b.end(), seconds) - b.begin()] += 1;
  sum += seconds;
  ++count;
}

double Scheduler::kv_arrival_time(const nlohmann::json& body) {
  if (body.contains("arrived_at") && body["arrived_at"].is_number()) {
    return body["arrived_at"].get<double>();
  }
  return wall_seconds();
}

void Scheduler::observe_pd_handoff(const std::vector<Entry>& entries) {
  double now = -1;
  for (const Entry& e : entries) {
    SchedRequest& r = *e.request;
    if (r.kv_arrived_at < 0) continue;
    if (now < 0) now = wall_seconds();
    stats_.pd_handoff.observe(now - r.kv_arrived_at);
    r.kv_arrived_at = -1;
  }
}

nlohmann::json Scheduler::pd_handoff_json() const {
  const HandoffLatency& h = stats_.pd_handoff;
  return {{"bounds", HandoffLatency::bounds()},
          {"counts", h.counts},
          {"sum", h.sum},
          {"count", h.count}};
}

}  // namespace epserve
