#include "core/phase_timer.h"

namespace epserve {

PhaseTimes& PhaseTimes::global() {
  static PhaseTimes times;
  return times;
}

double PhaseTimes::total(const std::string& phase) const {
  auto it = totals_.find(phase);
  return it == totals_.end() ? 0.0 : it->second;
}

}  // namespace epserve
