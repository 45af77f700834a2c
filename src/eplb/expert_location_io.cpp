#include "eplb/expert_location_io.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "eplb/planner_io.h"

namespace epserve::eplb {
namespace {

using json = nlohmann::json;
using ep::ExpertLocation;

// Reads an array of arrays of integers with the given outer sizes into a flat vector; returns
// the inner size (which must be the same for every row and, when expected_inner >= 0, equal it).
int read_int_rows(const json& rows, std::string_view source, const char* key, int expected_rows,
                  int expected_inner, std::vector<int32_t>& out) {
  EPS_CHECK(rows.is_array() && static_cast<int>(rows.size()) == expected_rows,
            "{}: {} must have {} rows, found {}", source, key, expected_rows,
            rows.is_array() ? std::to_string(rows.size()) : std::string("no array"));
  int inner = expected_inner;
  for (int r = 0; r < expected_rows; ++r) {
    const json& row = rows[r];
    if (inner < 0 && row.is_array()) inner = static_cast<int>(row.size());
    EPS_CHECK(row.is_array() && static_cast<int>(row.size()) == inner,
              "{}: {} row {} must hold {} integers", source, key, r, inner);
    for (const json& v : row) {
      EPS_CHECK(v.is_number_integer(), "{}: {} row {} holds {}, expected an integer", source, key,
                r, v.dump());
      out.push_back(v.get<int32_t>());
    }
  }
  return inner;
}

}  // namespace

ExpertLocation expert_location_from_placement(const Placement& placement, int ep_size) {
  return ExpertLocation::from_physical_to_logical(
      placement.num_logical, ep_size, placement.num_physical, placement.physical_to_logical,
      placement.logical_to_physical, placement.max_replicas);
}

ExpertLocation expert_location_from_json(const json& doc, const ExpertLocationOptions& o,
                                         std::string_view source) {
  EPS_CHECK(doc.is_object(), "{}: expected a JSON object", source);
  if (doc.contains("physical_to_logical_map")) {
    std::vector<int32_t> physical_to_logical;
    read_int_rows(doc["physical_to_logical_map"], source, "physical_to_logical_map", o.num_layers,
                  o.num_physical, physical_to_logical);
    std::vector<int32_t> ordered;
    int width = 0;
    if (doc.contains("logical_to_all_physical_map")) {
      const json& layers = doc["logical_to_all_physical_map"];
      EPS_CHECK(layers.is_array() && static_cast<int>(layers.size()) == o.num_layers,
                "{}: logical_to_all_physical_map must have {} layers", source, o.num_layers);
      width = -1;
      for (int l = 0; l < o.num_layers; ++l) {
        width = read_int_rows(layers[l], source, "logical_to_all_physical_map layer", o.num_logical,
                              width, ordered);
      }
    }
    return ExpertLocation::from_physical_to_logical(o.num_logical, o.ep_size, o.num_physical,
                                                    std::move(physical_to_logical),
                                                    std::move(ordered), width);
  }
  if (doc.contains("logical_count")) {
    ExpertLoad load = expert_load_from_json(doc, source);
    EPS_CHECK(load.num_layers == o.num_layers && load.num_logical == o.num_logical,
              "{}: logical_count is {} layers x {} experts, the model has {} x {}", source,
              load.num_layers, load.num_logical, o.num_layers, o.num_logical);
    PlacementConfig config{o.num_physical, o.ep_size, o.num_nodes, o.num_groups};
    return expert_location_from_placement(plan_placement(load, config, o.algorithm), o.ep_size);
  }
  std::string keys;
  for (const auto& [key, value] : doc.items()) keys += (keys.empty() ? "" : ", ") + key;
  EPS_THROW("{}: expected physical_to_logical_map or logical_count, found keys [{}]", source, keys);
}

ExpertLocation expert_location_from_init(std::string_view value, const ExpertLocationOptions& o) {
  if (value == "trivial") {
    return ExpertLocation::trivial(o.num_layers, o.num_logical, o.num_physical, o.ep_size);
  }
  EPS_CHECK(!value.ends_with(".pt"),
            "--init-expert-location {}: torch .pt files are not supported; pass JSON with "
            "physical_to_logical_map or logical_count",
            value);
  if (value.ends_with(".json")) {
    return expert_location_from_json(read_json_file(std::string(value)), o, value);
  }
  return expert_location_from_json(parse_json_text(value, "--init-expert-location"), o,
                                   "--init-expert-location");
}

nlohmann::ordered_json expert_location_to_json(const ExpertLocation& location) {
  using ordered = nlohmann::ordered_json;
  ordered physical_to_logical = ordered::array();
  ordered logical_to_all_physical = ordered::array();
  ordered num_valid = ordered::array();
  for (int l = 0; l < location.num_layers(); ++l) {
    auto row = location.layer_physical_to_logical(l);
    physical_to_logical.push_back(std::vector<int32_t>(row.begin(), row.end()));
    ordered layer = ordered::array();
    std::vector<int32_t> counts;
    for (int e = 0; e < location.num_logical(); ++e) {
      std::span<const int32_t> replicas = location.logical_to_all_physical(l, e);
      std::vector<int32_t> cells(replicas.begin(), replicas.end());
      cells.resize(location.max_replicas(), -1);
      layer.push_back(std::move(cells));
      counts.push_back(static_cast<int32_t>(replicas.size()));
    }
    logical_to_all_physical.push_back(std::move(layer));
    num_valid.push_back(std::move(counts));
  }
  ordered out;
  out["num_layers"] = location.num_layers();
  out["num_logical_experts"] = location.num_logical();
  out["num_physical_experts"] = location.num_physical();
  out["ep_size"] = location.ep_size();
  out["physical_to_logical_map"] = std::move(physical_to_logical);
  out["logical_to_all_physical_map"] = std::move(logical_to_all_physical);
  out["logical_to_all_physical_map_num_valid"] = std::move(num_valid);
  return out;
}

}  // namespace epserve::eplb
