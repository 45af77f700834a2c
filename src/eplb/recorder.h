// The expert distribution recorder of one rank (SGLang's ExpertDistributionRecorder): counts, per
// forward pass, the tokens this rank sends to every (layer, physical expert), and keeps them in
// one of SGLang's modes:
//   stat         a ring buffer of --expert-distribution-recorder-buffer-size passes (-1: every
//                pass), each [layers, logical experts]: the pass's physical counts folded through
//                the placement in force during that pass
//   stat_approx  the same, counted from what the dispatcher delivered to this rank's slots
//                (DeepEP's num_recv_tokens_per_expert) instead of the router's choices
//   per_pass     one record per pass: forward_pass_id, rank, global_physical_count [layers,
//                physical experts] (this rank's tokens)
//   per_token    per_pass plus the input_ids and positions of this rank's tokens and their
//                physical top-k ids per layer, topk_ids_of_layer [layers, tokens, top_k]
// It does no communication: summing over ranks and writing the dump is expert_runtime's job.
// Like SGLang's, start() resets and starts, stop() keeps what was recorded, and passes are only
// counted while recording.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "model/forward_batch.h"
#include "model/moe_context.h"

namespace epserve::eplb {

enum class RecorderMode { kStat, kStatApprox, kPerPass, kPerToken };

// "stat", "stat_approx", "per_pass", "per_token"; anything else is an error naming the flag.
RecorderMode parse_recorder_mode(std::string_view name);
std::string_view recorder_mode_name(RecorderMode mode);

struct RecorderShape {
  int num_layers = 0;
  int num_logical = 0;
  int num_physical = 0;
  int ep_size = 1;  // ranks the physical slots are split over (balancedness is per such rank)
};

class ExpertDistributionRecorder : public ExpertCountSink {
 public:
  // buffer_size: passes the stat ring buffer keeps; -1: unbounded. `rank` goes into records.
  // dispatcher_counts: the MoE layers dispatch tokens and report what each slot received
  // (stat_approx counts that; without it stat_approx counts the router's choices as stat does).
  ExpertDistributionRecorder(RecorderMode mode, int64_t buffer_size, RecorderShape shape, int rank,
                             bool dispatcher_counts = false);

  RecorderMode mode() const { return mode_; }
  const RecorderShape& shape() const { return shape_; }
  bool recording() const { return recording_; }
  // Clears everything and starts recording (SGLang's start_record).
  void start();
  void stop() { recording_ = false; }
  // Clears what was recorded (a dump does this after writing, as SGLang's does).
  void reset();

  // Around every forward pass (no-ops unless recording). end_pass folds the pass's counts
  // through `physical_to_logical` [layers, physical experts], the placement of that pass.
  void begin_pass(int64_t pass_id, const ForwardBatch& batch);
  void end_pass(std::span<const int32_t> physical_to_logical);

  void on_topk(int layer, const int32_t* physical_ids, int64_t first_token, int64_t num_tokens,
               int top_k) override;
  void on_received(int layer, int first_slot, const int64_t* rows_per_slot, int n) override;

  // This rank's logical counts, [rows, layers, logical experts] row-major, oldest pass first.
  // stat with a bounded buffer: rows = buffer_size, passes not yet recorded are zero rows (as
  // SGLang's buffer); otherwise one row per recorded pass.
  std::vector<int64_t> logical_count(int64_t* rows) const;
  // The same summed over the rows, [layers, logical experts].
  std::vector<int64_t> logical_count_sum() const;
  int64_t num_recorded_passes() const { return num_passes_; }
  // per_pass / per_token records of this rank (an empty array in the stat modes).
  const nlohmann::json& records() const { return records_; }
  // Tokens each expert-parallel rank received in the last recorded pass, [layers, ep_size]
  // (this rank's share of them; sum over ranks for the whole pass).
  const std::vector<int64_t>& last_pass_rank_loads() const { return rank_loads_; }

 private:
  bool counts_from_dispatcher() const {
    return mode_ == RecorderMode::kStatApprox && dispatcher_counts_;
  }
  bool bounded() const {
    return mode_ != RecorderMode::kPerPass && mode_ != RecorderMode::kPerToken && buffer_size_ > 0;
  }

  RecorderMode mode_;
  int64_t buffer_size_;
  RecorderShape shape_;
  int rank_;
  bool dispatcher_counts_;
  bool recording_ = false;

  // The pass in progress.
  int64_t pass_id_ = 0;
  std::vector<int64_t> pass_counts_;  // [layers, physical]
  std::vector<int32_t> batch_input_ids_, batch_positions_;
  int64_t share_first_ = 0, share_tokens_ = -1;
  int top_k_ = 0;
  std::vector<std::vector<int32_t>> pass_topk_;  // per layer: [share tokens, top_k]

  // What was recorded.
  std::vector<int32_t> rows_;  // [capacity or passes, layers, logical]
  int64_t num_passes_ = 0;     // passes appended since the last reset
  nlohmann::json records_ = nlohmann::json::array();
  std::vector<int64_t> rank_loads_;  // [layers, ep_size]
};

}  // namespace epserve::eplb
