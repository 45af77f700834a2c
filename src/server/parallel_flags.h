// SGLang's parallel-layout, recorder and EPLB flags: one table for every command that runs a model
// (serve, generate, bench-one-batch, perplexity). The values land in ParallelOptions and
// ExpertRuntimeOptions, whose resolve() is the one validation.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "runtime/expert_options.h"
#include "runtime/parallel_options.h"

namespace epserve {

void add_parallel_flags(CLI::App& sub, ParallelOptions& options);

// Whether the command has /dump_expert_distribution_record (serve): then the dump's folder and
// format flags exist too.
enum class RecorderDump { kNone, kServed };
void add_expert_flags(CLI::App& sub, ExpertRuntimeOptions& experts, RecorderDump dump);

// Throws one epserve::Error naming every setting in `missing` ("a, b and c are not implemented in
// this build of epserve yet"); nothing when it is empty. serve and the offline commands say it
// alike.
void refuse_not_implemented(const std::vector<std::string>& missing);

// The offline commands (generate, bench-one-batch, perplexity) after parsing: resolves and
// validates the layout (and the expert flags when given), refuses what this build cannot run
// yet, and prints resolve()'s notes once (not in the rank processes). generate and
// bench-one-batch have no dump: a recorder mode must feed EPLB or the metrics.
void resolve_offline_flags(ParallelOptions& parallel, ExpertRuntimeOptions* experts,
                           const char* command);

}  // namespace epserve
