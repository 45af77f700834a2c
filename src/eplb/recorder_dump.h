// What /dump_expert_distribution_record writes: the recorder's counts summed over the ranks (and,
// in per_pass / per_token, every rank's records), as JSON and / or as SGLang's torch.save file
// (.pt, read with torch.load(path, weights_only=True)). Both have the same keys, in this order:
//   rank                                   0 (the counts are summed over all ranks)
//   recorder_mode                          stat, stat_approx, per_pass or per_token
//   num_recorded_passes                    passes recorded since the last start or dump
//   logical_count                          [rows, layers, logical experts]; .pt: an int32 tensor
//                                          (SGLang's dtype)
//   average_utilization_rate_over_window   mean balancedness (with the metrics), else null / None
//   records                                per_pass / per_token only: forward_pass_id, rank,
//                                          global_physical_count [layers, physical] (.pt: int32
//                                          tensor); per_token adds input_ids, positions (lists)
//                                          and topk_ids_of_layer [layers, tokens, top_k] (.pt:
//                                          int32 tensor)
//   last_physical_to_logical_map           [layers, physical]; .pt: an int64 tensor
// Like SGLang, every dump is a new file (expert_distribution_recorder_<unix ms>.json / .pt) and
// nothing removes old ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eplb/recorder.h"
#include "eplb/torch_save.h"

namespace epserve::eplb {

struct RecorderDump {
  RecorderMode mode = RecorderMode::kStat;
  RecorderShape shape;
  int64_t num_recorded_passes = 0;
  int64_t rows = 0;
  std::vector<int64_t> logical_count;  // [rows, layers, logical]
  std::optional<double> average_utilization_rate_over_window;
  nlohmann::json records;                             // per_pass / per_token: an array; else null
  std::vector<int32_t> last_physical_to_logical_map;  // [layers, physical]
};

nlohmann::ordered_json recorder_dump_json(const RecorderDump& dump);
torch_save::Value recorder_dump_torch(const RecorderDump& dump);

// "json", "pt" or "both"; anything else is an error naming the flag.
void check_recorder_format(const std::string& format);

// Writes <dir>/expert_distribution_recorder_<stem>.json and / or .pt as `format` says, creating
// `dir` when missing (as SGLang). Returns the paths written; throws epserve::Error naming the
// path that could not be written.
std::vector<std::string> write_recorder_dump(const RecorderDump& dump, const std::string& dir,
                                             const std::string& format, const std::string& stem);

}  // namespace epserve::eplb
