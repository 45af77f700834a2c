// The expert-distribution recorder, its metrics and live EPLB inside one rank process: a
// PassObserver of the model that every rank of the world installs alike. Around each forward pass
// it points the MoE layers at the recorder and folds the pass's counts; with
// --enable-expert-distribution-metrics it sums the passes' per-rank loads over the world (16
// passes per all-reduce) and keeps the balancedness of each; with --enable-eplb it lets the
// EplbManager rebalance.
//
// Commands from the HTTP endpoints (start / stop / dump) are collective: every rank of the world
// must run the same command between the same two forward passes. The group leaders agree on them
// (runtime/rank_main.cpp) and hand them to their followers before the next batch
// (runtime/group_runner.h). A dump sums the logical counts over the ranks, gathers the
// per_pass / per_token records on world rank 0, which writes
// expert_distribution_recorder_<unix ms>.json and / or .pt (eplb/recorder_dump.h) into the
// folder expert_distribution_dump_dir() names and returns the paths.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eplb/eplb_manager.h"
#include "eplb/recorder.h"
#include "model/causal_lm.h"
#include "runtime/expert_options.h"
#include "runtime/parallel_setup.h"

namespace epserve {

class Communicator;

// The recorder commands, as the frontend names them (SGLang's endpoint names without the slash).
// kRebalance (no endpoint; bench-one-batch uses it) plans and moves every layer at once.
// kFlushMetrics (no endpoint) sums the passes whose balancedness is still pending now.
enum class ExpertCommand : int64_t {
  kStart = 1,
  kStop = 2,
  kDump = 3,
  kRebalance = 4,
  kFlushMetrics = 5
};
// "start_expert_distribution_record" ... ; 0 for any other name.
int64_t expert_command_code(const std::string& name);

// Where dumps go: `flag` (--expert-distribution-recorder-dir) when given, else
// $EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR, else $SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, else
// /tmp.
std::string expert_distribution_dump_dir(const std::string& flag);

class ExpertRuntime : public PassObserver {
 public:
  // `world` may be null (one process). Installs itself as the model's pass observer.
  // The placement is the model's MoE context's.
  ExpertRuntime(CausalLM& model, std::shared_ptr<Communicator> world, ExpertRuntimeOptions options);
  ~ExpertRuntime() override;

  void on_pass_begin(const ForwardBatch& batch) override;
  void on_pass_end() override;

  // Runs a command on this rank (collective over the world). The result is what the endpoint
  // answers: {"ok": true} and, for a dump on world rank 0, {"path": ...}; errors as {"error"}.
  nlohmann::json run_command(int64_t code);

  // For get_stats / metrics: balancedness of the last pass and its mean since start, rebalances.
  nlohmann::json stats() const;

  eplb::ExpertDistributionRecorder* recorder() { return recorder_.get(); }
  eplb::EplbManager* manager() { return manager_.get(); }

 private:
  std::span<const int32_t> physical_to_logical() const;
  // Per-rank loads of recorded passes wait in pending_loads_ and are summed over the world
  // kMetricsBatch passes at a time (one all-reduce per batch, not one per pass).
  void queue_balancedness();
  void flush_balancedness();
  nlohmann::json dump();

  CausalLM& model_;
  std::shared_ptr<Communicator> world_;
  ExpertRuntimeOptions options_;
  std::vector<int32_t> identity_;  // physical_to_logical of one process (slot = expert)
  std::unique_ptr<eplb::ExpertDistributionRecorder> recorder_;
  std::unique_ptr<eplb::EplbManager> manager_;

  std::vector<int64_t> pending_loads_;  // [pending passes, layers, ep]
  int pending_passes_ = 0;
  double last_balancedness_ = 1.0;
  double balancedness_sum_ = 0;
  int64_t balancedness_passes_ = 0;
  std::chrono::steady_clock::time_point last_log_;
};

// The runtime a rank needs for these options (null when none asks for one). Fills what comes
// from the layout and the model (dispatcher counts, nodes, expert groups). The test hook
// EPSERVE_EPLB_FAULT=<world rank>:<rebalance>:<chunk> makes that rank fail that chunk.
std::unique_ptr<ExpertRuntime> make_expert_runtime(CausalLM& model, const RankContext& ctx,
                                                   const ParallelOptions& parallel,
                                                   ExpertRuntimeOptions options);

}  // namespace epserve
