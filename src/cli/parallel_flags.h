// SGLang's parallel-layout flags for the offline commands (generate, bench-one-batch); `serve`
// has its own full set in server/server_args.
#pragma once

#include <CLI/CLI.hpp>

#include "runtime/parallel_setup.h"

namespace epserve::cli {

void add_parallel_flags(CLI::App& sub, ParallelOptions& options);

}  // namespace epserve::cli
