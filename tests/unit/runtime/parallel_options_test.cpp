// The one validation of SGLang's parallel flags that every command runs (ParallelOptions::resolve):
// what it derives, what it says it derived, and what it refuses.
#include "runtime/parallel_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

std::string resolve_error(ParallelOptions o) {
  try {
    o.resolve();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ParallelOptions, DeepepSpreadsTheExpertsOverEveryRankAndSaysSo) {
  ParallelOptions o;
  o.tp_size = 4;
  o.moe_a2a_backend = "deepep";
  o.resolve();
  EXPECT_EQ(o.ep_size, 4);
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_THAT(o.notes[0], HasSubstr("ep_size 4 (not 1)"));
}

TEST(ParallelOptions, DpAttentionWithoutDpSizeTakesTheWorldAndSaysSo) {
  ParallelOptions o;
  o.ep_size = 4;
  o.enable_dp_attention = true;
  o.resolve();
  EXPECT_EQ(o.tp_size, 4);
  EXPECT_EQ(o.dp_size, 4);
  EXPECT_EQ(o.attention_groups(), 4);
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_THAT(o.notes[0], HasSubstr("--enable-dp-attention without --dp-size"));
}

TEST(ParallelOptions, TwoBatchOverlapSaysItsSplitRuleAtStartUp) {
  ParallelOptions o;
  o.tp_size = 2;
  o.ep_size = 2;
  o.moe_a2a_backend = "deepep";
  o.enable_two_batch_overlap = true;
  unsetenv("EPSERVE_TBO_POLICY");
  o.resolve();
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_THAT(o.notes[0], HasSubstr("this one-node job runs without splitting"));
  setenv("EPSERVE_TBO_POLICY", "sometimes", 1);  // refused before any rank starts
  EXPECT_THAT(resolve_error(o), HasSubstr("must be 'auto' or 'always'"));
  unsetenv("EPSERVE_TBO_POLICY");
}

TEST(ParallelOptions, ResolvingTwiceChangesNothing) {
  ParallelOptions o;
  o.tp_size = 4;
  o.ep_size = 2;
  o.dp_size = 2;
  o.enable_dp_attention = true;
  o.resolve();
  ParallelOptions again = o;
  again.resolve();
  EXPECT_EQ(again.tp_size, o.tp_size);
  EXPECT_EQ(again.ep_size, o.ep_size);
  EXPECT_EQ(again.dp_size, o.dp_size);
  EXPECT_EQ(again.attention_groups(), 2);
}

TEST(ParallelOptions, RefusesWhatNoCommandCanRun) {
  ParallelOptions plain_dp;
  plain_dp.dp_size = 2;
  EXPECT_THAT(resolve_error(plain_dp), HasSubstr("without --enable-dp-attention"));
  ParallelOptions redundant;
  redundant.ep_num_redundant_experts = 2;
  EXPECT_THAT(resolve_error(redundant), HasSubstr("--ep-num-redundant-experts needs --ep-size"));
  ParallelOptions dense;
  dense.tp_size = 4;
  dense.moe_dense_tp_size = 3;
  EXPECT_THAT(resolve_error(dense), HasSubstr("--moe-dense-tp-size 3 must divide"));
  dense.moe_dense_tp_size = 2;
  dense.resolve();
  EXPECT_EQ(dense.not_implemented(), std::vector<std::string>{"--moe-dense-tp-size above 1"});
}

}  // namespace
}  // namespace epserve
