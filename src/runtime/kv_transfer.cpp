#include "runtime/kv_transfer.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace epserve {
namespace {

std::chrono::milliseconds seconds_from_env(const char* name, std::chrono::milliseconds fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  double seconds = std::strtod(value, &end);
  EPS_CHECK(end != value && *end == '\0' && seconds > 0, "{}={}: expected seconds (> 0)", name,
            value);
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

DisaggTimeouts DisaggTimeouts::from_env() {
  DisaggTimeouts t;
  t.bootstrap = seconds_from_env("SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT", t.bootstrap);
  t.waiting = seconds_from_env("SGLANG_DISAGGREGATION_WAITING_TIMEOUT", t.waiting);
  t.transfer = seconds_from_env("EPSERVE_DISAGGREGATION_TRANSFER_TIMEOUT", t.transfer);
  return t;
}

}  // namespace epserve
