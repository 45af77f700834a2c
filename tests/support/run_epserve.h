// Runs the epserve binary under test (EPSERVE_BINARY) with arguments, capturing stdout and
// stderr together; `env` (VAR=value ...) goes before the command.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace epserve::testing {

struct RunResult {
  int exit_code;  // -1 when the process did not exit normally
  bool signaled;
  std::string output;  // stdout and stderr
};

inline RunResult run_epserve(const std::string& args, const std::string& env = "") {
  std::string cmd = env + " " + std::string(EPSERVE_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  return RunResult{WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status), out};
}

}  // namespace epserve::testing
