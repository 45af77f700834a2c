// From SGLang's parallel flags to a running rank: the world size rule, the launch (one command
// starts this node's ranks and supervises them), and, inside a rank, the communicators and the
// ModelParallel that load_causal_lm cuts the model with.
//
// World size W = --tp-size, or the largest of --ep-size and --dp-size when it is absent
// (SGLang's rule). --ep-size must divide W. Without DP attention the W ranks form one attention
// group (heads split W ways); with it, dp_size groups of W / dp_size ranks.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "comm/launcher.h"
#include "model/causal_lm.h"
#include "model/moe_context.h"
#include "model/parallel.h"
#include "runtime/parallel_options.h"

namespace epserve {

class Communicator;

struct RankContext {
  RankInfo info;
  std::shared_ptr<Communicator> world;
  ModelParallel parallel;
  // The live MoE objects this rank's model runs with: the placement (from
  // --init-expert-location), the dispatchers (deepep), the pass state.
  std::shared_ptr<MoeContext> moe = std::make_shared<MoeContext>();
  int dp_rank = 0;     // this rank's attention group
  bool leader = true;  // rank 0 of its attention group (runs the scheduler)
  // The leaders of all attention groups (DP attention): they agree each step on whether to run.
  std::shared_ptr<Communicator> leaders;

  // What load_causal_lm takes for this rank.
  ModelLoadOptions model_load() const { return {parallel, moe, {}}; }
};

// In a rank process (or a single process): connects the data plane, cuts the layout and makes
// the MoE context (placement and, for deepep, the dispatchers: collective over the world).
RankContext setup_rank(const ParallelOptions& options, const std::string& model_dir);

// With W > 1 and not yet a rank: starts this node's ranks and supervises them (returns the
// launcher's exit code). Otherwise runs rank_main, turning errors into one line and an exit
// code (a failure elsewhere: kExitPeerFailure; here: 1, after telling the other ranks).
int launch_or_run(const ParallelOptions& options, const std::function<int()>& rank_main);

}  // namespace epserve
