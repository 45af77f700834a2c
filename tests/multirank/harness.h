// Test harness for multi-rank tests: a gtest test calls run_ranks(W, body); the test process
// becomes the launcher (run_launcher) and re-executes this test binary W times with
// --gtest_filter naming the current test, so each rank process reaches the same run_ranks call,
// sees it is a rank (is_rank_process) and runs body in place of launching.
//
// In a rank, body's gtest failures and exceptions make the rank exit 1 (the exception line is
// printed), which makes the launcher return non-zero. run_nodes() does the same across network
// namespaces, one launcher per "node" (see netns.h).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "comm/launcher.h"

namespace epserve::test {

struct RankRunOptions {
  std::vector<std::pair<std::string, std::string>> env;  // extra environment for the ranks
  std::chrono::milliseconds grace{1000};
  std::vector<std::string>* reports = nullptr;  // receives the launcher's report lines
};

// In the test process: launches W ranks and returns the launcher's exit code.
// In a rank process: runs body and exits.
int run_ranks(int world_size, const std::function<void(const RankInfo&)>& body,
              const RankRunOptions& options = {});

// The full name of the running test, for --gtest_filter.
std::string current_test_filter();

// A fresh empty directory under the build's temporary area, shared by the ranks of one test
// through the environment variable EPSERVE_TEST_DIR (set by run_ranks when empty).
std::string test_dir();

// Writes text to <test_dir>/<name>.
void write_file(const std::string& name, const std::string& text);
std::string read_file(const std::string& name);

}  // namespace epserve::test
