#include "runtime/expert_options.h"

#include "core/error.h"
#include "eplb/recorder.h"
#include "eplb/recorder_dump.h"

namespace epserve {

void ExpertRuntimeOptions::resolve(const ParallelOptions& parallel) {
  EPS_CHECK(!enable_eplb || parallel.ep_size > 1,
            "--enable-eplb needs --ep-size greater than 1 (expert parallelism over several ranks)");
  eplb.algorithm = eplb::parse_eplb_algorithm(eplb_algorithm);
  EPS_CHECK(eplb.rebalance_num_iterations >= 1,
            "--eplb-rebalance-num-iterations {} must be at least 1", eplb.rebalance_num_iterations);
  EPS_CHECK(eplb.layers_per_chunk >= 0, "--eplb-rebalance-layers-per-chunk {} is negative",
            eplb.layers_per_chunk);
  if (recorder_mode.empty() && (enable_eplb || enable_metrics)) recorder_mode = "stat";
  if (!recorder_mode.empty()) eplb::parse_recorder_mode(recorder_mode);  // checks the name
  eplb::check_recorder_format(recorder_format);
  if (recorder_buffer_size == 0) recorder_buffer_size = eplb.rebalance_num_iterations;
  EPS_CHECK(recorder_buffer_size == -1 || recorder_buffer_size > 0,
            "--expert-distribution-recorder-buffer-size {} must be -1 (unbounded) or positive",
            recorder_buffer_size);
}

}  // namespace epserve
