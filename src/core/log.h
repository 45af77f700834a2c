// Logging through spdlog. The level comes from --log-level.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace epserve {

// Accepts SGLang's level names (debug, info, warning, error, critical); throws on others.
void set_log_level(const std::string& level);

// Sends log lines to stderr in SGLang's form, "[2025-01-31 12:00:00 TP0] message": `prefix`
// follows the time (" TP0", " DP1 TP3", or empty), and lines above info name their level
// ("warning: ..."). Used by `epserve serve` and its ranks.
void use_sglang_log_format(const std::string& prefix);

}  // namespace epserve
