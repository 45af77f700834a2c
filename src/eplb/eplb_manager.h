// Live EPLB (SGLang's EPLBManager): every --eplb-rebalance-num-iterations forward passes, the
// token counts the recorder gathered are summed over all ranks, the placement algorithm
// (--eplb-algorithm) plans a new placement, and the routed experts move into their new slots,
// --eplb-rebalance-layers-per-chunk layers per forward pass (0: all at once), while serving goes
// on. Every rank runs the same passes in lockstep, so every rank counts passes alike, gets the
// same summed counts (exact integer sums), runs the same deterministic planner, and switches a
// chunk of layers at the same pass: no extra message is needed to agree on anything.
//
// Only layers whose placement changes move (a layer with no MoE or no recorded tokens keeps its
// placement); see weight_migration.h for how slots get their weights. A chunk that fails on any
// rank is dropped on every rank: its layers keep the old placement, the rest of that rebalance
// is abandoned, and the next one starts N passes later. Replicas hold identical weights, so a
// rebalance never changes an output.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "ep/expert_location.h"
#include "eplb/eplb_options.h"
#include "eplb/placement.h"
#include "eplb/weight_migration.h"

namespace epserve {
class CausalLM;
class Communicator;
}  // namespace epserve

namespace epserve::eplb {

class ExpertDistributionRecorder;

struct EplbCounters {
  int64_t rebalances = 0;  // plans made
  int64_t chunks_committed = 0;
  int64_t chunks_failed = 0;
  int64_t layers_moved = 0;
  MigrationStats migration;
};

// (rebalance index from 0, chunk index from 0) -> true to fail this rank's chunk (tests).
using RebalanceFault = std::function<bool(int64_t rebalance, int64_t chunk)>;

class EplbManager {
 public:
  // Rebalances the placement in the model's MoE context (its only owner).
  EplbManager(CausalLM& model, std::shared_ptr<Communicator> world, EplbOptions options);

  // The placement in force (its rows of committed layers; all of them between rebalances).
  const std::shared_ptr<const ep::ExpertLocation>& location() const;
  const EplbCounters& counters() const { return counters_; }
  bool rebalancing() const { return !pending_.empty(); }

  // After every forward pass, on every rank (collective when it plans or moves a chunk).
  void on_pass_end(ExpertDistributionRecorder& recorder);
  // Plans now and moves every chunk before returning (collective).
  void rebalance_now(ExpertDistributionRecorder& recorder);
  void set_fault(RebalanceFault fault) { fault_ = std::move(fault); }
  // The recorder was restarted: count the N passes to the next plan from here.
  void restart_window() { passes_ = 0; }

 private:
  void plan(ExpertDistributionRecorder& recorder);
  void move_next_chunk();

  CausalLM& model_;
  std::shared_ptr<Communicator> world_;
  EplbOptions options_;
  std::shared_ptr<const ep::ExpertLocation> target_;
  std::deque<std::vector<int>> pending_;  // chunks of layers still to move
  int64_t passes_ = 0;                    // since the last plan
  int64_t chunk_index_ = 0;
  EplbCounters counters_;
  RebalanceFault fault_;
};

}  // namespace epserve::eplb
