#include "harness.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "comm/world.h"
#include "core/error.h"

namespace epserve::test {

std::string current_test_filter() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name();
}

std::string test_dir() {
  if (const char* dir = std::getenv("EPSERVE_TEST_DIR")) return dir;
  std::string pattern = (std::filesystem::temp_directory_path() / "epserve_test_XXXXXX").string();
  char* made = mkdtemp(pattern.data());
  EPS_CHECK(made != nullptr, "cannot create a temporary directory");
  setenv("EPSERVE_TEST_DIR", made, 1);
  return made;
}

void write_file(const std::string& name, const std::string& text) {
  std::ofstream out(test_dir() + "/" + name);
  out << text;
}

std::string read_file(const std::string& name) {
  std::ifstream in(test_dir() + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_ranks(int world_size, const std::function<void(const RankInfo&)>& body,
              const RankRunOptions& options) {
  if (is_rank_process()) {
    RankInfo info = rank_info_from_env();
    int code = 0;
    try {
      body(info);
    } catch (const PeerFailure& e) {
      std::fprintf(stderr, "epserve: %s\n", e.what());
      code = kExitPeerFailure;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "epserve: %s\n", e.what());
      code = 1;
    }
    if (::testing::Test::HasFailure()) code = 1;
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(code);
  }
  unsetenv("EPSERVE_TEST_DIR");
  std::string dir = test_dir();
  LaunchOptions launch;
  launch.world_size = world_size;
  launch.args = {"multirank_tests", "--gtest_filter=" + current_test_filter()};
  launch.extra_env = options.env;
  launch.extra_env.push_back({"EPSERVE_TEST_DIR", dir});
  launch.grace = options.grace;
  if (options.reports) {
    launch.report = [&](const std::string& line) {
      std::fprintf(stderr, "launcher: %s\n", line.c_str());
      options.reports->push_back(line);
    };
  }
  return run_launcher(launch);
}

}  // namespace epserve::test
