#include "eplb/planner_io.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "eplb/balancedness.h"

namespace epserve::eplb {
namespace {

using json = nlohmann::json;

// Adds one [layers][experts] matrix into load (which takes its shape from the first one).
void add_matrix(const json& matrix, std::string_view source, const std::string& where,
                ExpertLoad& load) {
  EPS_CHECK(matrix.is_array() && !matrix.empty(),
            "{}: {} must be a non-empty array of layers, each an array of expert counts", source,
            where);
  if (load.num_layers == 0) {
    load.num_layers = static_cast<int>(matrix.size());
    EPS_CHECK(matrix[0].is_array() && !matrix[0].empty(),
              "{}: {}[0] must be a non-empty array of expert counts", source, where);
    load.num_logical = static_cast<int>(matrix[0].size());
    load.counts.assign(static_cast<size_t>(load.num_layers) * load.num_logical, 0.0);
  }
  EPS_CHECK(static_cast<int>(matrix.size()) == load.num_layers, "{}: {} has {} layers, expected {}",
            source, where, matrix.size(), load.num_layers);
  for (int l = 0; l < load.num_layers; ++l) {
    const json& row = matrix[l];
    EPS_CHECK(row.is_array() && static_cast<int>(row.size()) == load.num_logical,
              "{}: {}[{}] must be an array of {} expert counts, found {}", source, where, l,
              load.num_logical,
              row.is_array() ? std::to_string(row.size()) + " entries" : "no array");
    for (int e = 0; e < load.num_logical; ++e) {
      const json& v = row[e];
      EPS_CHECK(v.is_number(), "{}: {}[{}][{}] must be a number, found {}", source, where, l, e,
                v.dump());
      double count = v.get<double>();
      EPS_CHECK(std::isfinite(count) && count >= 0, "{}: {}[{}][{}] is {}; counts must be >= 0",
                source, where, l, e, v.dump());
      load.counts[static_cast<size_t>(l) * load.num_logical + e] += count;
    }
  }
}

}  // namespace

ExpertLoad expert_load_from_json(const json& doc, std::string_view source) {
  EPS_CHECK(doc.is_object() && doc.contains("logical_count"),
            "{}: expected a JSON object with key \"logical_count\"", source);
  const json& counts = doc["logical_count"];
  EPS_CHECK(counts.is_array() && !counts.empty() && counts[0].is_array() && !counts[0].empty(),
            "{}: logical_count must be [layers][experts] or [buffer][layers][experts]", source);
  ExpertLoad load;
  if (counts[0][0].is_array()) {  // a recorder dump: [buffer][layers][experts]
    for (size_t b = 0; b < counts.size(); ++b) {
      add_matrix(counts[b], source, "logical_count[" + std::to_string(b) + "]", load);
    }
  } else {
    add_matrix(counts, source, "logical_count", load);
  }
  return load;
}

json parse_json_text(std::string_view text, std::string_view source) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    EPS_THROW("{}: malformed JSON: {}", source, e.what());
  }
}

json read_json_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  EPS_CHECK(file, "cannot open {}", path);
  std::ostringstream text;
  text << file.rdbuf();
  return parse_json_text(text.str(), path);
}

nlohmann::ordered_json placement_to_json(const Placement& placement, const PlacementConfig& config,
                                         EplbAlgorithm resolved_algorithm,
                                         std::span<const double> balancedness_per_layer) {
  using ordered = nlohmann::ordered_json;
  const int L = placement.num_layers, E = placement.num_logical, P = placement.num_physical;
  const int R = placement.max_replicas;
  ordered physical_to_logical = ordered::array();
  ordered logical_to_physical = ordered::array();
  ordered logical_count = ordered::array();
  for (int l = 0; l < L; ++l) {
    auto p2l = placement.layer_physical_to_logical(l);
    physical_to_logical.push_back(std::vector<int32_t>(p2l.begin(), p2l.end()));
    auto counts = placement.layer_logical_count(l);
    logical_count.push_back(std::vector<int32_t>(counts.begin(), counts.end()));
    ordered layer = ordered::array();
    for (int e = 0; e < E; ++e) {
      const int32_t* row =
          placement.logical_to_physical.data() + (static_cast<size_t>(l) * E + e) * R;
      layer.push_back(std::vector<int32_t>(row, row + R));
    }
    logical_to_physical.push_back(std::move(layer));
  }
  ordered out;
  out["algorithm"] = eplb_algorithm_name(resolved_algorithm);
  out["num_physical_experts"] = P;
  out["num_gpus"] = config.num_gpus;
  out["num_nodes"] = config.num_nodes;
  out["num_groups"] = config.num_groups;
  out["physical_to_logical_map"] = std::move(physical_to_logical);
  out["logical_to_all_physical_map"] = std::move(logical_to_physical);
  out["logical_count"] = std::move(logical_count);
  out["balancedness"] = mean_balancedness(balancedness_per_layer);
  out["balancedness_per_layer"] =
      std::vector<double>(balancedness_per_layer.begin(), balancedness_per_layer.end());
  return out;
}

}  // namespace epserve::eplb
