// JSON in and out of the EPLB planner.
//
// Input: {"logical_count": [[count per logical expert] per layer]}, or a recorder dump in the
// shape of SGLang's stat dump, {"logical_count": [buffer][layers][experts], ...}, whose counts
// are summed over the buffer (as SGLang does before rebalancing). Counts are non-negative
// numbers; other keys are ignored.
//
// Output: physical_to_logical_map [layers][P], logical_to_all_physical_map
// [layers][experts][max replicas] padded with -1 (replicas in the algorithm's order),
// logical_count (replicas per expert) [layers][experts], balancedness (mean over layers),
// balancedness_per_layer, and the layout and algorithm that produced them.
#pragma once

#include <nlohmann/json.hpp>

#include <span>
#include <string>
#include <string_view>

#include "eplb/placement.h"

namespace epserve::eplb {

// `source` names the input in error messages (a file path, or "--init-expert-location").
ExpertLoad expert_load_from_json(const nlohmann::json& doc, std::string_view source);

// Parses JSON text; malformed JSON is an epserve::Error naming the source and the position.
nlohmann::json parse_json_text(std::string_view text, std::string_view source);

// Reads and parses a JSON file; a missing file is an epserve::Error naming it.
nlohmann::json read_json_file(const std::string& path);

nlohmann::ordered_json placement_to_json(const Placement& placement, const PlacementConfig& config,
                                         EplbAlgorithm resolved_algorithm,
                                         std::span<const double> balancedness_per_layer);

}  // namespace epserve::eplb
