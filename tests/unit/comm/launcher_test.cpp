#include "comm/launcher.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"

namespace epserve {
namespace {

TEST(CorePlan, DisjointSlicesWhenEnoughCores) {
  auto sets = plan_core_sets({0, 1, 2, 3, 4, 5, 6}, 3);
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[0], (std::vector<int>{0, 1}));
  EXPECT_EQ(sets[1], (std::vector<int>{2, 3}));
  EXPECT_EQ(sets[2], (std::vector<int>{4, 5, 6}));
  auto exact = plan_core_sets({4, 9}, 2);
  EXPECT_EQ(exact[0], (std::vector<int>{4}));
  EXPECT_EQ(exact[1], (std::vector<int>{9}));
}

TEST(CorePlan, NoPinningWhenRanksOutnumberCores) {
  auto sets = plan_core_sets({0, 1}, 4);
  ASSERT_EQ(sets.size(), 4u);
  for (auto& s : sets) EXPECT_TRUE(s.empty());
  EXPECT_EQ(suggested_threads(2, 4), 1);
  EXPECT_EQ(suggested_threads(16, 4), 4);
  EXPECT_EQ(suggested_threads(7, 2), 3);
}

TEST(RankInfoEnv, SingleProcessDefaults) {
  if (is_rank_process()) GTEST_SKIP() << "running inside a launched rank";
  RankInfo info = rank_info_from_env();
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.world_size, 1);
  EXPECT_TRUE(info.store_addr.empty());
  EXPECT_GE(info.num_threads, 1);
}

TEST(RankInfoEnv, ReadsLauncherVariables) {
  if (is_rank_process()) GTEST_SKIP() << "running inside a launched rank";
  setenv(kEnvRank, "5", 1);
  setenv(kEnvWorldSize, "8", 1);
  setenv(kEnvLocalRank, "1", 1);
  setenv(kEnvLocalWorldSize, "4", 1);
  setenv(kEnvNodeRank, "1", 1);
  setenv(kEnvNnodes, "2", 1);
  setenv(kEnvStoreAddr, "10.0.0.1:5000", 1);
  setenv(kEnvCpuCores, "2,3", 1);
  setenv(kEnvNumThreads, "2", 1);
  EXPECT_TRUE(is_rank_process());
  RankInfo info = rank_info_from_env();
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 4);
  EXPECT_EQ(info.node_rank, 1);
  EXPECT_EQ(info.nnodes, 2);
  EXPECT_EQ(info.store_addr, "10.0.0.1:5000");
  EXPECT_EQ(info.cpu_cores, (std::vector<int>{2, 3}));
  EXPECT_EQ(info.num_threads, 2);
  setenv(kEnvRank, "8", 1);
  EXPECT_THROW(rank_info_from_env(), Error);
  for (const char* name : {kEnvRank, kEnvWorldSize, kEnvLocalRank, kEnvLocalWorldSize, kEnvNodeRank,
                           kEnvNnodes, kEnvStoreAddr, kEnvCpuCores, kEnvNumThreads}) {
    unsetenv(name);
  }
}

TEST(Launcher, RejectsBadLayouts) {
  LaunchOptions o;
  o.world_size = 3;
  o.nnodes = 2;
  o.dist_init_addr = "127.0.0.1:1";
  EXPECT_THROW(run_launcher(o), Error);
  o.world_size = 4;
  o.dist_init_addr = "";
  EXPECT_THROW(run_launcher(o), Error);
  o.dist_init_addr = "127.0.0.1:1";
  o.node_rank = 2;
  EXPECT_THROW(run_launcher(o), Error);
}

TEST(Launcher, RunsRanksWithTheirEnvironment) {
  // Each rank runs a shell that checks its variables; exit codes tell the launcher.
  LaunchOptions o;
  o.world_size = 3;
  o.executable = "/bin/sh";
  o.args = {"sh", "-c",
            "test \"$EPSERVE_WORLD_SIZE\" = 3 && test \"$EPSERVE_LOCAL_WORLD_SIZE\" = 3 && "
            "test \"$EPSERVE_RANK\" = \"$EPSERVE_LOCAL_RANK\" && test -n \"$EPSERVE_STORE_ADDR\" "
            "&& test ${#EPSERVE_STORE_SECRET} = 64 "
            "&& test \"$EXTRA\" = yes"};
  o.extra_env = {{"EXTRA", "yes"}};
  EXPECT_EQ(run_launcher(o), 0);
  std::vector<std::string> reports;
  o.args = {"sh", "-c", "test \"$EPSERVE_RANK\" != 1 || exit 7; sleep 30"};
  o.grace = std::chrono::milliseconds(200);
  o.report = [&](const std::string& line) { reports.push_back(line); };
  EXPECT_EQ(run_launcher(o), 1);
  ASSERT_FALSE(reports.empty());
  EXPECT_NE(reports[0].find("rank 1 (pid"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("exited with code 7"), std::string::npos) << reports[0];
}

}  // namespace
}  // namespace epserve
