// Time spent in named phases of the forward pass (communication, expert compute, ...), summed
// per process. Benchmarks read the totals to report where a step's time goes; the cost is two
// clock reads per phase.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace epserve {

class PhaseTimes {
 public:
  static PhaseTimes& global();
  void add(const char* phase, double seconds) { totals_[phase] += seconds; }
  const std::map<std::string, double>& totals() const { return totals_; }
  double total(const std::string& phase) const;
  void reset() { totals_.clear(); }

 private:
  std::map<std::string, double> totals_;
};

// Adds the scope's duration to PhaseTimes::global() under `phase`.
class PhaseTimer {
 public:
  explicit PhaseTimer(const char* phase)
      : phase_(phase), start_(std::chrono::steady_clock::now()) {}
  ~PhaseTimer() {
    PhaseTimes::global().add(
        phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

 private:
  const char* phase_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace epserve
