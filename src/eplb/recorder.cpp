#include "eplb/recorder.h"

#include <algorithm>

#include "core/error.h"

namespace epserve::eplb {

RecorderMode parse_recorder_mode(std::string_view name) {
  if (name == "stat") return RecorderMode::kStat;
  if (name == "stat_approx") return RecorderMode::kStatApprox;
  if (name == "per_pass") return RecorderMode::kPerPass;
  if (name == "per_token") return RecorderMode::kPerToken;
  EPS_THROW(
      "--expert-distribution-recorder-mode '{}' is not one of stat, stat_approx, per_pass, "
      "per_token",
      name);
}

std::string_view recorder_mode_name(RecorderMode mode) {
  switch (mode) {
    case RecorderMode::kStat:
      return "stat";
    case RecorderMode::kStatApprox:
      return "stat_approx";
    case RecorderMode::kPerPass:
      return "per_pass";
    case RecorderMode::kPerToken:
      return "per_token";
  }
  return "stat";
}

ExpertDistributionRecorder::ExpertDistributionRecorder(RecorderMode mode, int64_t buffer_size,
                                                       RecorderShape shape, int rank,
                                                       bool dispatcher_counts)
    : mode_(mode),
      buffer_size_(buffer_size),
      shape_(shape),
      rank_(rank),
      dispatcher_counts_(dispatcher_counts) {
  EPS_CHECK(shape.num_layers > 0 && shape.num_logical > 0 &&
                shape.num_physical >= shape.num_logical && shape.ep_size > 0 &&
                shape.num_physical % shape.ep_size == 0,
            "expert distribution recorder: bad shape ({} layers, {} logical, {} physical, ep {})",
            shape.num_layers, shape.num_logical, shape.num_physical, shape.ep_size);
  EPS_CHECK(buffer_size == -1 || buffer_size > 0,
            "--expert-distribution-recorder-buffer-size {} must be -1 (unbounded) or positive",
            buffer_size);
  pass_counts_.assign(static_cast<size_t>(shape.num_layers) * shape.num_physical, 0);
  rank_loads_.assign(static_cast<size_t>(shape.num_layers) * shape.ep_size, 0);
  pass_topk_.resize(shape.num_layers);
  reset();
}

void ExpertDistributionRecorder::start() {
  reset();
  recording_ = true;
}

void ExpertDistributionRecorder::reset() {
  const size_t row = static_cast<size_t>(shape_.num_layers) * shape_.num_logical;
  rows_.assign(bounded() ? row * static_cast<size_t>(buffer_size_) : 0, 0);
  num_passes_ = 0;
  records_ = nlohmann::json::array();
  std::fill(rank_loads_.begin(), rank_loads_.end(), 0);
}

void ExpertDistributionRecorder::begin_pass(int64_t pass_id, const ForwardBatch& batch) {
  if (!recording_) return;
  pass_id_ = pass_id;
  std::fill(pass_counts_.begin(), pass_counts_.end(), 0);
  share_first_ = 0;
  share_tokens_ = -1;
  if (mode_ == RecorderMode::kPerToken) {
    batch_input_ids_ = batch.token_ids;
    batch_positions_ = batch.positions;
    for (auto& ids : pass_topk_) ids.clear();
  }
}

void ExpertDistributionRecorder::on_topk(int layer, const int32_t* physical_ids,
                                         int64_t first_token, int64_t num_tokens, int top_k) {
  if (!recording_) return;
  EPS_CHECK(layer >= 0 && layer < shape_.num_layers, "recorder: layer {} outside [0, {})", layer,
            shape_.num_layers);
  if (mode_ == RecorderMode::kPerToken) {
    share_first_ = first_token;
    share_tokens_ = num_tokens;
    top_k_ = top_k;
    pass_topk_[layer].assign(physical_ids, physical_ids + num_tokens * top_k);
  }
  if (counts_from_dispatcher()) return;
  int64_t* counts = pass_counts_.data() + static_cast<size_t>(layer) * shape_.num_physical;
  for (int64_t i = 0; i < num_tokens * top_k; ++i) {
    int32_t p = physical_ids[i];
    if (p >= 0 && p < shape_.num_physical) ++counts[p];
  }
}

void ExpertDistributionRecorder::on_received(int layer, int first_slot,
                                             const int64_t* rows_per_slot, int n) {
  if (!recording_ || !counts_from_dispatcher()) return;
  EPS_CHECK(layer >= 0 && layer < shape_.num_layers && first_slot >= 0 &&
                first_slot + n <= shape_.num_physical,
            "recorder: layer {} slots [{}, {}) outside the map", layer, first_slot, first_slot + n);
  int64_t* counts = pass_counts_.data() + static_cast<size_t>(layer) * shape_.num_physical;
  for (int i = 0; i < n; ++i) counts[first_slot + i] += rows_per_slot[i];
}

void ExpertDistributionRecorder::end_pass(std::span<const int32_t> physical_to_logical) {
  if (!recording_) return;
  const int L = shape_.num_layers, E = shape_.num_logical, P = shape_.num_physical;
  EPS_CHECK(physical_to_logical.size() == static_cast<size_t>(L) * P,
            "recorder: the placement has {} entries, expected {} layers x {} slots",
            physical_to_logical.size(), L, P);
  const size_t row_size = static_cast<size_t>(L) * E;
  int32_t* row;
  if (bounded()) {
    row = rows_.data() + static_cast<size_t>(num_passes_ % buffer_size_) * row_size;
    std::fill(row, row + row_size, 0);
  } else {
    rows_.resize(rows_.size() + row_size, 0);
    row = rows_.data() + rows_.size() - row_size;
  }
  const int per_rank = P / shape_.ep_size;
  std::fill(rank_loads_.begin(), rank_loads_.end(), 0);
  for (int l = 0; l < L; ++l) {
    const int64_t* counts = pass_counts_.data() + static_cast<size_t>(l) * P;
    for (int p = 0; p < P; ++p) {
      if (counts[p] == 0) continue;
      row[static_cast<size_t>(l) * E + physical_to_logical[static_cast<size_t>(l) * P + p]] +=
          static_cast<int32_t>(counts[p]);
      rank_loads_[static_cast<size_t>(l) * shape_.ep_size + p / per_rank] += counts[p];
    }
  }
  ++num_passes_;
  if (mode_ != RecorderMode::kPerPass && mode_ != RecorderMode::kPerToken) return;
  nlohmann::json counts = nlohmann::json::array();
  for (int l = 0; l < L; ++l) {
    counts.push_back(std::vector<int64_t>(pass_counts_.begin() + static_cast<int64_t>(l) * P,
                                          pass_counts_.begin() + static_cast<int64_t>(l + 1) * P));
  }
  nlohmann::json record = {
      {"forward_pass_id", pass_id_}, {"rank", rank_}, {"global_physical_count", std::move(counts)}};
  if (mode_ == RecorderMode::kPerToken) {
    // A pass with no MoE layer reported (or no tokens) records an empty share.
    const int64_t n = std::max<int64_t>(share_tokens_, 0);
    const auto first =
        std::min<int64_t>(share_first_, static_cast<int64_t>(batch_input_ids_.size()));
    const auto last = std::min<int64_t>(first + n, static_cast<int64_t>(batch_input_ids_.size()));
    record["input_ids"] =
        std::vector<int32_t>(batch_input_ids_.begin() + first, batch_input_ids_.begin() + last);
    record["positions"] =
        std::vector<int32_t>(batch_positions_.begin() + first, batch_positions_.begin() + last);
    nlohmann::json layers = nlohmann::json::array();
    for (int l = 0; l < L; ++l) {
      nlohmann::json tokens = nlohmann::json::array();
      const std::vector<int32_t>& ids = pass_topk_[l];
      for (int64_t t = 0; t < n; ++t) {
        if (ids.empty()) {
          tokens.push_back(std::vector<int32_t>(top_k_, -1));  // a dense layer
        } else {
          tokens.push_back(
              std::vector<int32_t>(ids.begin() + t * top_k_, ids.begin() + (t + 1) * top_k_));
        }
      }
      layers.push_back(std::move(tokens));
    }
    record["topk_ids_of_layer"] = std::move(layers);
  }
  records_.push_back(std::move(record));
}

std::vector<int64_t> ExpertDistributionRecorder::logical_count(int64_t* rows) const {
  const size_t row_size = static_cast<size_t>(shape_.num_layers) * shape_.num_logical;
  const int64_t n = static_cast<int64_t>(rows_.size() / row_size);
  *rows = n;
  std::vector<int64_t> out(rows_.size());
  // Oldest first: after the ring wrapped, the oldest row is the one written next.
  const int64_t start = bounded() && num_passes_ > buffer_size_ ? num_passes_ % buffer_size_ : 0;
  for (int64_t r = 0; r < n; ++r) {
    const int32_t* src = rows_.data() + static_cast<size_t>((start + r) % n) * row_size;
    std::copy_n(src, row_size, out.data() + static_cast<size_t>(r) * row_size);
  }
  return out;
}

std::vector<int64_t> ExpertDistributionRecorder::logical_count_sum() const {
  const size_t row_size = static_cast<size_t>(shape_.num_layers) * shape_.num_logical;
  std::vector<int64_t> out(row_size, 0);
  for (size_t i = 0; i < rows_.size(); ++i) out[i % row_size] += rows_[i];
  return out;
}

}  // namespace epserve::eplb
