#include "runtime/pass_trace.h"

#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/causal_lm.h"

namespace epserve {

PassTrace::PassTrace(CausalLM& model, std::string path, int rank)
    : model_(model),
      path_(std::move(path)),
      rank_(rank),
      origin_(std::chrono::steady_clock::now()) {
  model_.set_tbo_op_observer([this](const TboOperation& op, int micro_batch, bool begin) {
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - origin_)
                            .count();
    if (begin) {
      open_begin_ns_ = now;
      return;
    }
    const PassState& pass = model_.moe_context().pass;
    spans_.push_back({op.name, op.communication, micro_batch, op.layer, pass.pass_id,
                      pass.has_prefill, open_begin_ns_, now});
  });
}

PassTrace::~PassTrace() {
  model_.set_tbo_op_observer({});
  try {
    write();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epserve: rank %d: cannot write the trace: %s\n", rank_, e.what());
  }
}

void PassTrace::write() const {
  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"name", "process_name"},
                    {"ph", "M"},
                    {"pid", rank_},
                    {"args", {{"name", fmt::format("rank {}", rank_)}}}});
  for (int mb = 0; mb < 2; ++mb) {
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", rank_},
                      {"tid", mb},
                      {"args", {{"name", mb == 0 ? "micro-batch A" : "micro-batch B"}}}});
  }
  for (const Span& s : spans_) {
    events.push_back({{"name", s.name},
                      {"cat", s.communication ? "comm" : "compute"},
                      {"ph", "X"},
                      {"pid", rank_},
                      {"tid", s.micro_batch},
                      {"ts", static_cast<double>(s.begin_ns) / 1000.0},
                      {"dur", static_cast<double>(s.end_ns - s.begin_ns) / 1000.0},
                      {"args", {{"layer", s.layer}, {"pass", s.pass}, {"prefill", s.prefill}}}});
  }
  std::ofstream out(path_);
  EPS_CHECK(out.good(), "--trace-file: cannot write {}", path_);
  out << nlohmann::json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump();
}

std::string rank_trace_path(const std::string& path, int rank, int world) {
  return world > 1 ? fmt::format("{}.rank{}", path, rank) : path;
}

std::unique_ptr<PassTrace> make_pass_trace(CausalLM& model, const std::string& path, int rank,
                                           int world) {
  if (path.empty()) return nullptr;
  return std::make_unique<PassTrace>(model, rank_trace_path(path, rank, world), rank);
}

void merge_rank_traces(const std::string& path, int world) {
  nlohmann::json events = nlohmann::json::array();
  bool any = false;
  for (int r = 0; r < world; ++r) {
    const std::string part = rank_trace_path(path, r, world);
    std::ifstream in(part);
    if (!in) continue;
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    in.close();
    if (j.is_discarded()) continue;
    for (auto& e : j["traceEvents"]) events.push_back(std::move(e));
    std::remove(part.c_str());
    any = true;
  }
  if (!any) return;
  std::ofstream out(path);
  EPS_CHECK(out.good(), "--trace-file: cannot write {}", path);
  out << nlohmann::json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}.dump();
}

}  // namespace epserve
