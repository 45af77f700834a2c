#include "eplb/recorder_dump.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace epserve::eplb {

namespace {

bool detailed(RecorderMode mode) {
  return mode == RecorderMode::kPerPass || mode == RecorderMode::kPerToken;
}

void check_sizes(const RecorderDump& d) {
  const RecorderShape& s = d.shape;
  EPS_CHECK(d.logical_count.size() == static_cast<size_t>(d.rows) * s.num_layers * s.num_logical,
            "recorder dump: {} counts for {} rows x {} layers x {} experts", d.logical_count.size(),
            d.rows, s.num_layers, s.num_logical);
  EPS_CHECK(
      d.last_physical_to_logical_map.size() == static_cast<size_t>(s.num_layers) * s.num_physical,
      "recorder dump: a map of {} entries for {} layers x {} slots",
      d.last_physical_to_logical_map.size(), s.num_layers, s.num_physical);
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary);
  EPS_CHECK(file && file.write(bytes.data(), static_cast<std::streamsize>(bytes.size())),
            "cannot write the expert distribution dump to {} (--expert-distribution-recorder-dir "
            "names the folder)",
            path.string());
}

}  // namespace

nlohmann::ordered_json recorder_dump_json(const RecorderDump& d) {
  check_sizes(d);
  const RecorderShape& s = d.shape;
  nlohmann::json logical_count = nlohmann::json::array();
  for (int64_t r = 0; r < d.rows; ++r) {
    nlohmann::json layers = nlohmann::json::array();
    for (int l = 0; l < s.num_layers; ++l) {
      const auto begin = d.logical_count.begin() + (r * s.num_layers + l) * s.num_logical;
      layers.push_back(std::vector<int64_t>(begin, begin + s.num_logical));
    }
    logical_count.push_back(std::move(layers));
  }
  nlohmann::ordered_json out;
  out["rank"] = 0;
  out["recorder_mode"] = recorder_mode_name(d.mode);
  out["num_recorded_passes"] = d.num_recorded_passes;
  out["logical_count"] = std::move(logical_count);
  out["average_utilization_rate_over_window"] =
      d.average_utilization_rate_over_window
          ? nlohmann::json(*d.average_utilization_rate_over_window)
          : nlohmann::json(nullptr);
  if (detailed(d.mode)) out["records"] = d.records.is_array() ? d.records : nlohmann::json::array();
  nlohmann::json last_map = nlohmann::json::array();
  for (int l = 0; l < s.num_layers; ++l) {
    const auto begin = d.last_physical_to_logical_map.begin() + l * s.num_physical;
    last_map.push_back(std::vector<int32_t>(begin, begin + s.num_physical));
  }
  out["last_physical_to_logical_map"] = std::move(last_map);
  return out;
}

torch_save::Value recorder_dump_torch(const RecorderDump& d) {
  using torch_save::Tensor;
  using torch_save::Value;
  check_sizes(d);
  const RecorderShape& s = d.shape;
  Value out = Value::empty_dict();
  out.set("rank", Value::of(0));
  out.set("recorder_mode", Value::of(std::string(recorder_mode_name(d.mode))));
  out.set("num_recorded_passes", Value::of(d.num_recorded_passes));
  out.set("logical_count", Value::of(Tensor::int32({d.rows, s.num_layers, s.num_logical},
                                                   std::span<const int64_t>(d.logical_count))));
  out.set("average_utilization_rate_over_window",
          Value::of(d.average_utilization_rate_over_window
                        ? nlohmann::ordered_json(*d.average_utilization_rate_over_window)
                        : nlohmann::ordered_json(nullptr)));
  if (detailed(d.mode)) {
    Value records = Value::empty_list();
    if (d.records.is_array()) {
      for (const nlohmann::json& record : d.records) {
        Value r = Value::empty_dict();
        for (const auto& [key, item] : record.items()) {
          if (key == "global_physical_count") {
            r.set(key, Value::of(Tensor::int32_from_json(item, 2)));
          } else if (key == "topk_ids_of_layer") {
            r.set(key, Value::of(Tensor::int32_from_json(item, 3)));
          } else {
            r.set(key, Value::of(nlohmann::ordered_json(item)));
          }
        }
        records.list.push_back(std::move(r));
      }
    }
    out.set("records", std::move(records));
  }
  std::vector<int64_t> map(d.last_physical_to_logical_map.begin(),
                           d.last_physical_to_logical_map.end());
  out.set("last_physical_to_logical_map",
          Value::of(Tensor::int64({s.num_layers, s.num_physical}, std::span<const int64_t>(map))));
  return out;
}

void check_recorder_format(const std::string& format) {
  EPS_CHECK(format == "json" || format == "pt" || format == "both",
            "--expert-distribution-recorder-format '{}' is not one of: json, pt, both", format);
}

std::vector<std::string> write_recorder_dump(const RecorderDump& dump, const std::string& dir,
                                             const std::string& format, const std::string& stem) {
  check_recorder_format(format);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // an existing folder is fine
  const std::filesystem::path base =
      std::filesystem::path(dir) / ("expert_distribution_recorder_" + stem);
  std::vector<std::string> paths;
  if (format == "json" || format == "both") {
    const std::filesystem::path path = base.string() + ".json";
    write_file(path, recorder_dump_json(dump).dump() + "\n");
    paths.push_back(path.string());
  }
  if (format == "pt" || format == "both") {
    const std::filesystem::path path = base.string() + ".pt";
    write_file(path, torch_save::save_to_string(recorder_dump_torch(dump)));
    paths.push_back(path.string());
  }
  return paths;
}

}  // namespace epserve::eplb
