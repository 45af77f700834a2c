// A rank that dies, hangs or fails mid-operation: every other rank stops within a bounded time
// with one line naming the rank and what it was doing, the launcher returns non-zero with one
// line naming the rank and how it ended, and no process is left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "comm/communicator.h"
#include "core/error.h"
#include "harness.h"

namespace epserve {
namespace {

constexpr int kRanks = 3;

// Allreduce steps until something stops them; `fault` runs at the start of every step.
void allreduce_loop(const RankInfo& info, const CommOptions& options,
                    const std::function<void(int step)>& fault) {
  test::write_file(fmt::format("pid{}", info.rank), std::to_string(getpid()));
  auto comm = Communicator::create_world(info, options);
  std::vector<float> v(1000, 1.0f);
  for (int step = 0;; ++step) {
    comm->set_context(fmt::format("step {}", step));
    fault(step);
    try {
      comm->allreduce(v.data(), v.size(), ReduceOp::kSum);
      std::fill(v.begin(), v.end(), 1.0f);
    } catch (const Error& e) {
      test::write_file(fmt::format("error{}", info.rank), e.what());
      throw;
    }
  }
}

void expect_no_rank_left() {
  for (int r = 0; r < kRanks; ++r) {
    std::string pid = test::read_file(fmt::format("pid{}", r));
    ASSERT_FALSE(pid.empty()) << "rank " << r << " did not start";
    errno = 0;
    EXPECT_EQ(kill(std::stoi(pid), 0), -1) << "rank " << r << " (pid " << pid << ") is alive";
    EXPECT_EQ(errno, ESRCH);
  }
}

bool any_contains(const std::vector<std::string>& lines, const std::string& a,
                  const std::string& b) {
  for (auto& l : lines) {
    if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
  }
  return false;
}

TEST(RankFailure, KilledRankStopsEveryRank) {
  std::vector<std::string> reports;
  test::RankRunOptions opts;
  opts.reports = &reports;
  int code = test::run_ranks(
      kRanks,
      [](const RankInfo& info) {
        allreduce_loop(info, CommOptions{}, [&](int step) {
          if (info.rank == 1 && step == 50) raise(SIGKILL);
        });
      },
      opts);
  EXPECT_NE(code, 0);
  EXPECT_TRUE(any_contains(reports, "rank 1 (pid", "was killed by signal 9"))
      << (reports.empty() ? "no report" : reports[0]);
  for (int r : {0, 2}) {
    std::string line = test::read_file(fmt::format("error{}", r));
    EXPECT_NE(line.find(fmt::format("rank {}: stopped", r)), std::string::npos) << line;
    EXPECT_NE(line.find("in allreduce (step 50)"), std::string::npos) << line;
    EXPECT_NE(line.find("rank 1"), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << "not one line: " << line;
  }
  expect_no_rank_left();
}

TEST(RankFailure, HungRankMakesOthersTimeOut) {
  std::vector<std::string> reports;
  test::RankRunOptions opts;
  opts.reports = &reports;
  int code = test::run_ranks(
      kRanks,
      [](const RankInfo& info) {
        CommOptions options;
        options.timeout = std::chrono::seconds(2);
        allreduce_loop(info, options, [&](int step) {
          if (info.rank == 1 && step == 20) raise(SIGSTOP);
        });
      },
      opts);
  EXPECT_NE(code, 0);
  EXPECT_FALSE(reports.empty());
  bool someone_timed_out = false;
  for (int r : {0, 2}) {
    std::string line = test::read_file(fmt::format("error{}", r));
    EXPECT_NE(line.find("waiting for rank 1 in allreduce (step 20)"), std::string::npos) << line;
    someone_timed_out |= line.find("timed out after 2 s waiting for rank 1") != std::string::npos;
  }
  EXPECT_TRUE(someone_timed_out);
  expect_no_rank_left();
}

TEST(RankFailure, ExceptionInRankIsReported) {
  std::vector<std::string> reports;
  test::RankRunOptions opts;
  opts.reports = &reports;
  int code = test::run_ranks(
      kRanks,
      [](const RankInfo& info) {
        allreduce_loop(info, CommOptions{}, [&](int step) {
          if (info.rank == 2 && step == 5) EPS_THROW("rank 2 gave up on purpose");
        });
      },
      opts);
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(any_contains(reports, "rank 2 (pid", "exited with code 1"))
      << (reports.empty() ? "no report" : reports[0]);
  expect_no_rank_left();
}

TEST(RankFailure, LauncherForwardsSigterm) {
  int code = test::run_ranks(kRanks, [](const RankInfo& info) {
    allreduce_loop(info, CommOptions{}, [&](int step) {
      if (info.rank == 0 && step == 10) kill(getppid(), SIGTERM);
    });
  });
  EXPECT_EQ(code, 128 + SIGTERM);
  expect_no_rank_left();
}

}  // namespace
}  // namespace epserve
