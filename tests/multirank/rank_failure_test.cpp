// A rank that dies in the middle of a forward pass: the other ranks stop within a bounded time,
// the launcher exits non-zero with one line naming the dead rank, and no process is left.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/temp_dir.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

// Child processes of pid and their EPSERVE_RANK, read from /proc.
std::map<int, int> ranks_of_children(pid_t pid) {
  std::map<int, int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    int ppid;
    rest >> state >> ppid;
    if (ppid != pid) continue;
    std::ifstream environ(e.path() / "environ");
    std::string env((std::istreambuf_iterator<char>(environ)), {});
    size_t at = env.find("EPSERVE_RANK=");
    if (at != std::string::npos) out[std::stoi(env.substr(at + 13))] = std::stoi(name);
  }
  return out;
}

TEST(RankFailure, KillingARankMidForwardStopsTheJob) {
  testing::TempDir dir;
  std::string model = dir.file("model");
  ASSERT_EQ(std::system(fmt::format("{} make-model --arch deepseek_v3 --preset small --output {} "
                                    "> /dev/null",
                                    EPSERVE_BINARY, model)
                            .c_str()),
            0);
  // A context long enough that the generation outlasts the test on any machine (the small model
  // decodes thousands of tokens per second on a fast one).
  {
    std::ifstream in(model + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["max_position_embeddings"] = 131072;
    std::ofstream(model + "/config.json") << config.dump(2);
  }
  std::string prompt;
  for (int i = 0; i < 200; ++i) prompt += (i ? "," : "") + std::to_string(3 + i % 900);
  std::string log = dir.file("log");
  pid_t launcher = fork();
  if (launcher == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(EPSERVE_BINARY, EPSERVE_BINARY, "generate", "--model-path", model.c_str(), "--input-ids",
          prompt.c_str(), "--max-new-tokens", "120000", "--ignore-eos", "--ep-size", "2",
          "--moe-a2a-backend", "deepep", "--dist-timeout", "20", nullptr);
    _exit(127);
  }
  // Wait until both ranks run, then let them get into the decode loop.
  std::map<int, int> ranks;
  for (int i = 0; i < 200 && ranks.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ranks = ranks_of_children(launcher);
  }
  ASSERT_EQ(ranks.size(), 2u);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  if (kill(ranks[1], SIGKILL) != 0) {
    kill(launcher, SIGKILL);
    waitpid(launcher, nullptr, 0);
    std::ifstream in(log);
    FAIL() << "rank 1 was gone before the kill:\n"
           << std::string(std::istreambuf_iterator<char>(in), {});
  }

  auto start = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(launcher, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(done, launcher) << "the launcher did not stop within 30 s";
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 25.0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_THAT(text, HasSubstr("rank 1"));
  EXPECT_THAT(text, HasSubstr("signal 9"));
  for (const auto& [rank, pid] : ranks) {
    EXPECT_NE(kill(pid, 0), 0) << "rank " << rank << " (pid " << pid << ") is still alive";
  }
}

}  // namespace
}  // namespace epserve
