// The stage scheduler runs two micro-batches in SGLang's overlapped order
// (execute_overlapped_operations): B `delta` stages behind A, each micro-batch's operations in
// program order, and A's stage i always before B's stage i.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/tbo_scheduler.h"

namespace epserve {
namespace {

std::vector<std::string> run(int num_stages, int delta) {
  std::vector<std::string> log;
  TboProgram program;
  for (int s = 0; s < num_stages; ++s) {
    program.add({"s" + std::to_string(s), 0, false, [&log, s](int mb) {
                   log.push_back(std::string(mb ? "B" : "A") + std::to_string(s));
                 }});
    program.yield();
  }
  run_overlapped(program.finish(), delta);
  return log;
}

TEST(TboScheduler, PrefillRunsTheMicroBatchesStageByStage) {
  EXPECT_EQ(run(3, 0), (std::vector<std::string>{"A0", "B0", "A1", "B1", "A2", "B2"}));
}

TEST(TboScheduler, DecodeKeepsBTwoStagesBehind) {
  EXPECT_EQ(run(5, 2),
            (std::vector<std::string>{"A0", "A1", "A2", "B0", "A3", "B1", "A4", "B2", "B3", "B4"}));
}

TEST(TboScheduler, ADeltaLongerThanTheProgramRunsAThenB) {
  EXPECT_EQ(run(1, 2), (std::vector<std::string>{"A0", "B0"}));
}

TEST(TboScheduler, TheObserverSeesEveryOperationBeginAndEnd) {
  TboProgram program;
  program.add({"dispatch_start", 3, true, [](int) {}});
  std::vector<std::string> seen;
  run_overlapped(program.finish(), 0, [&seen](const TboOperation& op, int mb, bool begin) {
    seen.push_back(op.name + std::to_string(op.layer) + (mb ? "B" : "A") + (begin ? "+" : "-"));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"dispatch_start3A+", "dispatch_start3A-",
                                            "dispatch_start3B+", "dispatch_start3B-"}));
}

TEST(TboScheduler, YieldsCloseStagesAndTrailingOperationsFormTheLast) {
  TboProgram program;
  program.add({"a", 0, false, [](int) {}});
  program.yield();
  program.add({"b", 0, false, [](int) {}});
  program.add({"c", 0, false, [](int) {}});
  auto stages = program.finish();
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[1].size(), 2u);
}

}  // namespace
}  // namespace epserve
