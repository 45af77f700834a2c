// The live EPLB manager's options (--eplb-rebalance-num-iterations, ...), apart from the manager
// so that the flag parsers need not include it.
#pragma once

#include <cstdint>

#include "eplb/placement.h"

namespace epserve::eplb {

struct EplbOptions {
  int64_t rebalance_num_iterations = 1000;
  int layers_per_chunk = 0;  // 0: every changing layer in one pass
  EplbAlgorithm algorithm = EplbAlgorithm::kAuto;
  int num_nodes = 1;
  int num_groups = 0;  // the model's n_group (0: none)
};

}  // namespace epserve::eplb
