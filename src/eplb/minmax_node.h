// The per-node step of epserve's minmax placement (see algorithms_minmax.h): for the experts one
// node holds, choose replica counts and place the replicas onto the node's GPUs, equal slots
// each, minimising the heaviest GPU's load (the sum over its slots of weight / replica count).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace epserve::eplb::minmax {

// The experts one node holds and their loads; local expert j is global expert experts[j].
struct NodeProblem {
  std::vector<int32_t> experts;
  std::vector<double> weight;
  int num_slots = 0;
  int num_gpus = 0;
};

// One node's plan. Slot i lives on the node's GPU i / slots_per_gpu.
struct NodePlan {
  std::vector<int32_t> count;        // replicas per local expert
  std::vector<int32_t> slot_expert;  // [num_slots] local expert of each slot
  std::vector<double> slot_load;     // [num_slots] weight / count of the slot's expert
  std::vector<double> gpu_load;      // [num_gpus]

  int heaviest_gpu() const {
    return static_cast<int>(std::max_element(gpu_load.begin(), gpu_load.end()) - gpu_load.begin());
  }
  double max_load() const { return *std::max_element(gpu_load.begin(), gpu_load.end()); }
};

// Replica counts from the exact greedy for the smallest largest load per replica, longest
// processing time packing with equal slot counts, then local search on the heaviest GPU:
// pairwise swaps with the lightest GPU that allows an improving one, and moves of one replica
// from a cheap donor expert to an expert on the heaviest GPU, kept when the swaps that follow
// lower the maximum. Stops when no step helps or the heaviest GPU is within 1e-5 of the bound.
NodePlan plan_node(const NodeProblem& problem);

// No plan's heaviest GPU is lighter: max(mean GPU load, smallest possible largest replica load).
double node_lower_bound(const NodeProblem& problem);

}  // namespace epserve::eplb::minmax
