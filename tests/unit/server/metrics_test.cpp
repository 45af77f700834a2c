// Prometheus text: counters, cumulative histogram buckets, scheduler gauges summed over groups.
#include "server/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace epserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, HistogramBucketsAreCumulative) {
  Histogram h({1, 2, 5});
  h.observe(0.5);
  h.observe(1.5, 2);
  h.observe(10);
  std::string out;
  h.render(out, "x", "m=\"a\"");
  EXPECT_THAT(out, HasSubstr("x_bucket{m=\"a\",le=\"1\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{m=\"a\",le=\"2\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{m=\"a\",le=\"5\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("x_bucket{m=\"a\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(out, HasSubstr("x_sum{m=\"a\"} 13.5\n"));
  EXPECT_THAT(out, HasSubstr("x_count{m=\"a\"} 4\n"));
}

TEST(Metrics, CountersAndLatencies) {
  Metrics m("tiny \"model\"");
  m.first_token(0.02);
  m.next_tokens(3, -1);
  m.next_tokens(2, 0.01);
  m.request_finished("stop", 7, 5, 4, 0.1);
  m.request_finished("abort", 3, 0, 0, 0.2);
  std::string out = m.render({});
  EXPECT_THAT(out, HasSubstr("sglang:num_requests_total{model_name=\"tiny \\\"model\\\"\"} 2\n"));
  EXPECT_THAT(out,
              HasSubstr("sglang:num_aborted_requests_total{model_name=\"tiny \\\"model\\\"\"} 1"));
  EXPECT_THAT(out, HasSubstr("sglang:prompt_tokens_total{model_name=\"tiny \\\"model\\\"\"} 10"));
  EXPECT_THAT(out,
              HasSubstr("sglang:generation_tokens_total{model_name=\"tiny \\\"model\\\"\"} 5"));
  EXPECT_THAT(out, HasSubstr("sglang:cached_tokens_total{model_name=\"tiny \\\"model\\\"\"} 4"));
  EXPECT_THAT(
      out,
      HasSubstr("sglang:time_to_first_token_seconds_count{model_name=\"tiny \\\"model\\\"\"} 1"));
  // Two tokens 0.01 s after the previous ones: two observations of 0.005 s.
  EXPECT_THAT(
      out,
      HasSubstr("sglang:inter_token_latency_seconds_count{model_name=\"tiny \\\"model\\\"\"} 2"));
  EXPECT_THAT(out, HasSubstr("# TYPE sglang:e2e_request_latency_seconds histogram"));
  EXPECT_THAT(out, Not(HasSubstr("sglang:num_running_reqs")));
}

TEST(Metrics, SchedulerGaugesAreSummed) {
  Metrics m("m");
  std::string out = m.render({{{"num_running_reqs", 3},
                               {"num_queue_reqs", 1},
                               {"kv_used_tokens", 100},
                               {"kv_total_tokens", 1000}},
                              {{"num_running_reqs", 2},
                               {"num_queue_reqs", 0},
                               {"kv_used_tokens", 300},
                               {"kv_total_tokens", 1000}},
                              nullptr});
  EXPECT_THAT(out, HasSubstr("sglang:num_running_reqs{model_name=\"m\"} 5\n"));
  EXPECT_THAT(out, HasSubstr("sglang:num_queue_reqs{model_name=\"m\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("sglang:num_used_tokens{model_name=\"m\"} 400\n"));
  EXPECT_THAT(out, HasSubstr("sglang:token_usage{model_name=\"m\"} 0.2\n"));
}

// A decode server's handoff latency (runtime/scheduler_handoff.cpp) summed over its DP groups.
TEST(Metrics, PdHandoffLatencyIsSummedOverGroups) {
  Metrics m("m");
  EXPECT_THAT(m.render({{{"num_running_reqs", 0}}}), Not(HasSubstr("pd_handoff")));
  nlohmann::json a = {{"bounds", {0.01, 0.1}}, {"counts", {1, 2, 0}}, {"sum", 0.25}, {"count", 3}};
  nlohmann::json b = {{"bounds", {0.01, 0.1}}, {"counts", {0, 1, 1}}, {"sum", 1.5}, {"count", 2}};
  std::string out = m.render({{{"pd_handoff_latency", a}}, {{"pd_handoff_latency", b}}});
  EXPECT_THAT(out, HasSubstr("# TYPE epserve:pd_handoff_latency_seconds histogram\n"));
  EXPECT_THAT(
      out,
      HasSubstr("epserve:pd_handoff_latency_seconds_bucket{model_name=\"m\",le=\"0.01\"} 1\n"));
  EXPECT_THAT(
      out, HasSubstr("epserve:pd_handoff_latency_seconds_bucket{model_name=\"m\",le=\"0.1\"} 4\n"));
  EXPECT_THAT(out, HasSubstr("epserve:pd_handoff_latency_seconds_count{model_name=\"m\"} 5\n"));
  EXPECT_THAT(out, HasSubstr("epserve:pd_handoff_latency_seconds_sum{model_name=\"m\"} 1.75\n"));
}

TEST(Metrics, EveryLineIsACommentOrASample) {
  Metrics m("m");
  m.request_finished("length", 1, 1, 0, 0.5);
  std::string out = m.render({{{"num_running_reqs", 0}}});
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# ", 0) == 0) continue;
    EXPECT_THAT(line, ::testing::MatchesRegex("[a-z0-9_:]+\\{[^}]*\\} [-+0-9.eInfa]+")) << line;
  }
}

}  // namespace
}  // namespace epserve
