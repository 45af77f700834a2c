// Balancedness of a placement, the figure SGLang logs and DeepSeek's EPLB optimises.
// A rank's load is the sum over its slots of logical_load / replica_count (every replica of an
// expert takes an equal share of its tokens). A layer's balancedness is
// (mean rank load + 1e-5) / (max rank load + 1e-5): 1 is perfect, 1 / num_gpus is everything on
// one rank. A placement is reported by the mean over its layers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "eplb/placement.h"

namespace epserve::eplb {

// Rank loads of one layer; replica counts are taken from physical_to_logical itself.
std::vector<double> rank_loads(std::span<const double> logical_load,
                               std::span<const int32_t> physical_to_logical, int num_gpus);

double balancedness_of_rank_loads(std::span<const double> loads);

double layer_balancedness(std::span<const double> logical_load,
                          std::span<const int32_t> physical_to_logical, int num_gpus);

std::vector<double> balancedness_per_layer(const ExpertLoad& load, const Placement& placement,
                                           int num_gpus);

double mean_balancedness(std::span<const double> per_layer);

}  // namespace epserve::eplb
