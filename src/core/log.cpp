#include "core/log.h"

#include "core/error.h"

namespace epserve {

void set_log_level(const std::string& level) {
  spdlog::level::level_enum value;
  if (level == "debug") value = spdlog::level::debug;
  else if (level == "info") value = spdlog::level::info;
  else if (level == "warning" || level == "warn") value = spdlog::level::warn;
  else if (level == "error") value = spdlog::level::err;
  else if (level == "critical") value = spdlog::level::critical;
  else EPS_THROW("unknown --log-level '{}': use debug, info, warning, error or critical", level);
  spdlog::set_level(value);
}

}  // namespace epserve
