#include "core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "core/error.h"

namespace epserve {
namespace {

// %* in the pattern: "warning: " and the like for lines that are not info.
class LevelUnlessInfo : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (msg.level == spdlog::level::info) return;
    const char* name = msg.level == spdlog::level::warn  ? "warning"
                       : msg.level == spdlog::level::err ? "error"
                                                         : nullptr;
    std::string text = name ? name
                            : std::string(spdlog::level::to_string_view(msg.level).data(),
                                          spdlog::level::to_string_view(msg.level).size());
    text += ": ";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<LevelUnlessInfo>();
  }
};

}  // namespace

void set_log_level(const std::string& level) {
  spdlog::level::level_enum value;
  if (level == "debug")
    value = spdlog::level::debug;
  else if (level == "info")
    value = spdlog::level::info;
  else if (level == "warning" || level == "warn")
    value = spdlog::level::warn;
  else if (level == "error")
    value = spdlog::level::err;
  else if (level == "critical")
    value = spdlog::level::critical;
  else
    EPS_THROW("unknown --log-level '{}': use debug, info, warning, error or critical", level);
  spdlog::set_level(value);
}

void use_sglang_log_format(const std::string& prefix) {
  auto level = spdlog::get_level();
  auto logger = std::make_shared<spdlog::logger>("epserve",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<LevelUnlessInfo>('*').set_pattern("[%Y-%m-%d %H:%M:%S" + prefix + "] %*%v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace epserve
