// epserve's placement algorithm, "minmax": the same inputs and constraints as DeepSeek's policies
// (equal slots per rank, every logical expert on at least one slot, and in hierarchical mode every
// expert group whole on one node with an equal number of groups per node, so replicas of an
// expert never leave its group's node), with a lower maximum rank load.
//
// Per node: replica counts from the exact greedy that minimises the largest load per replica,
// then longest-processing-time packing with equal slot counts, then local search on the heaviest
// rank: (1) the pairwise swap of two slots between it and another rank that lowers the larger of
// the two loads most, repeated until none helps; (2) moving one replica from a cheap donor expert
// to an expert on the heaviest rank, kept when the swaps that follow lower the maximum. In
// hierarchical mode the groups are packed onto nodes by load first, then pairs of groups are
// swapped between the node holding the heaviest rank and the others while that lowers the
// maximum. Each layer's result is compared with DeepSeek's under the same mode and DeepSeek's is
// kept unless ours is strictly better, so balancedness is never below DeepSeek's.
#pragma once

#include <span>

#include "eplb/placement.h"

namespace epserve::eplb {

LayerPlacement minmax_rebalance_layer(std::span<const double> counts, const PlacementConfig& config,
                                      bool hierarchical);

Placement minmax_rebalance(const ExpertLoad& load, const PlacementConfig& config,
                           bool hierarchical);

}  // namespace epserve::eplb
