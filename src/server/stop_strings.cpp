#include "server/stop_strings.h"

#include <algorithm>
#include <utility>

namespace epserve {

StopStringFilter::StopStringFilter(std::vector<std::string> stops, bool no_stop_trim)
    : no_stop_trim_(no_stop_trim) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopStringFilter::feed(std::string_view text) {
  if (matched_) return "";
  held_.append(text);
  if (stops_.empty()) return std::exchange(held_, std::string());

  // The earliest complete stop string (the first listed wins a tie).
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& stop : stops_) {
    size_t at = held_.find(stop);
    if (at < best) {
      best = at;
      best_stop = &stop;
    }
  }
  if (best_stop != nullptr) {
    matched_ = *best_stop;
    std::string out = held_.substr(0, no_stop_trim_ ? best + best_stop->size() : best);
    held_.clear();
    return out;
  }

  // Hold back the longest tail that is a proper prefix of some stop string. Text before it can
  // never become part of a match: a match starting there would have to be a prefix of the tail.
  size_t keep_from = held_.size();
  for (const std::string& stop : stops_) {
    size_t longest = std::min(stop.size() - 1, held_.size());
    for (size_t len = longest; len > 0; --len) {
      if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
        keep_from = std::min(keep_from, held_.size() - len);
        break;
      }
    }
  }
  std::string out = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return out;
}

std::string StopStringFilter::flush() {
  if (matched_) return "";
  return std::exchange(held_, std::string());
}

}  // namespace epserve
