// SGLang's parallel-layout flags for the offline commands (generate, bench-one-batch); `serve`
// has its own full set in server/server_args.
#pragma once

#include <CLI/CLI.hpp>

#include "runtime/expert_runtime.h"
#include "runtime/parallel_setup.h"

namespace epserve::cli {

void add_parallel_flags(CLI::App& sub, ParallelOptions& options);
// The recorder and EPLB flags (--enable-eplb, --expert-distribution-recorder-mode, ...).
// `algorithm` receives --eplb-algorithm's text; parse it into experts.eplb.algorithm.
void add_expert_flags(CLI::App& sub, ExpertRuntimeOptions& experts, std::string& algorithm);
// generate and bench-one-batch have no dump: a recorder mode must feed EPLB or the metrics.
void check_offline_expert_flags(const ExpertRuntimeOptions& experts, const char* command);

}  // namespace epserve::cli
