// Errors: one exception type and one check macro. EPS_CHECK(cond, fmt, args...) throws
// epserve::Error whose message is the formatted text; the file:line is kept separately so that
// user-facing output can stay a single line while logs can show where it came from.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace epserve {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line)
      : std::runtime_error(std::move(message)), file_(file), line_(line) {}
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  const char* file_;
  int line_;
};

}  // namespace epserve

#define EPS_THROW(...) throw ::epserve::Error(fmt::format(__VA_ARGS__), __FILE__, __LINE__)

#define EPS_CHECK(cond, ...)    \
  do {                          \
    if (!(cond)) [[unlikely]] { \
      EPS_THROW(__VA_ARGS__);   \
    }                           \
  } while (0)
