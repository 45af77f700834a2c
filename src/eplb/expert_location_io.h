// The expert location map (ep/expert_location.h) built from what EPLB produces and reads: a
// planner result (SGLang's init_by_eplb: replicas in the planner's order), JSON, and the value of
// --init-expert-location: "trivial", a path to a .json file, or a JSON string, holding
// physical_to_logical_map (used as is; a logical_to_all_physical_map next to it, as our dumps
// write, keeps its replica order) or logical_count (token counts [layers][experts] or a recorder
// dump [buffer][layers][experts], summed over the buffer and planned with --eplb-algorithm, as
// SGLang does). SGLang also reads torch .pt files; we do not.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

#include "ep/expert_location.h"
#include "eplb/placement.h"

namespace epserve::eplb {

// What --init-expert-location needs besides its value: the model's MoE layout and the flags.
struct ExpertLocationOptions {
  int num_layers = 0;
  int num_logical = 0;
  int num_physical = 0;  // num_logical + --ep-num-redundant-experts
  int ep_size = 1;
  int num_groups = 0;                              // the model's n_group; 0 = none
  int num_nodes = 1;                               // --nnodes
  EplbAlgorithm algorithm = EplbAlgorithm::kAuto;  // --eplb-algorithm, for logical_count input
};

ep::ExpertLocation expert_location_from_placement(const Placement& placement, int ep_size);
ep::ExpertLocation expert_location_from_json(const nlohmann::json& doc,
                                             const ExpertLocationOptions& options,
                                             std::string_view source);
// The value of --init-expert-location.
ep::ExpertLocation expert_location_from_init(std::string_view value,
                                             const ExpertLocationOptions& options);

// physical_to_logical_map, logical_to_all_physical_map, logical_to_all_physical_map_num_valid
// and the sizes; expert_location_from_json reads it back unchanged.
nlohmann::ordered_json expert_location_to_json(const ep::ExpertLocation& location);

}  // namespace epserve::eplb
