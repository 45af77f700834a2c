// Stop strings on streamed text, as SGLang applies them: text is released only when it can no
// longer be the start of a stop string, so a stream never shows part of one; when a stop string
// appears, the text ends before it (or after it, with no_stop_trim) and nothing more is released.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace epserve {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops, bool no_stop_trim = false);

  // Takes newly decoded text; returns the text that may be shown now.
  std::string feed(std::string_view text);
  // The end of the stream: releases what was held back (no stop string can complete now).
  std::string flush();

  bool matched() const { return matched_.has_value(); }
  const std::string& matched_stop() const { return *matched_; }

 private:
  std::vector<std::string> stops_;
  bool no_stop_trim_;
  std::string held_;
  std::optional<std::string> matched_;
};

}  // namespace epserve
