// The expert-distribution recorder and live-EPLB flags as one set of options, resolved and
// validated in one place for every command (server/parallel_flags.h registers them).
#pragma once

#include <cstdint>
#include <string>

#include "eplb/eplb_options.h"
#include "runtime/parallel_options.h"

namespace epserve {

struct ExpertRuntimeOptions {
  std::string recorder_mode;         // empty: no recorder (and no commands)
  int64_t recorder_buffer_size = 0;  // -1: unbounded; 0: eplb.rebalance_num_iterations
  bool enable_metrics = false;       // --enable-expert-distribution-metrics
  bool enable_eplb = false;
  std::string eplb_algorithm = "auto";  // --eplb-algorithm; resolve() parses it into eplb
  eplb::EplbOptions eplb;
  bool dispatcher_counts = false;  // the MoE layers dispatch (DeepEP): stat_approx counts there
  std::string recorder_dir;        // empty: expert_distribution_dump_dir()'s default
  std::string recorder_format = "json";  // json, pt (torch.load) or both

  bool active() const { return !recorder_mode.empty() || enable_eplb || enable_metrics; }
  // SGLang's defaults: EPLB or the metrics without a mode record in stat; a buffer size of 0
  // means --eplb-rebalance-num-iterations passes. Checks the values and the rules that tie them
  // to the layout (EPLB needs --ep-size above 1). Throws naming the flag on a bad value.
  void resolve(const ParallelOptions& parallel);
};

}  // namespace epserve
