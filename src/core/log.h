// Logging through spdlog. Messages go to stderr; the level comes from --log-level.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace epserve {

// Accepts SGLang's level names (debug, info, warning, error, critical); throws on others.
void set_log_level(const std::string& level);

}  // namespace epserve
