// The router's pure parts: cache_aware's approximate tree (match, split, eviction) and choices,
// the circuit breaker's states, the bootstrap fields, and the logprob merge of a stream.
#include <gtest/gtest.h>

#include <thread>

#include "router/cache_aware.h"
#include "router/logprob_merge.h"
#include "router/router.h"
#include "router/worker.h"

namespace epserve {
namespace {

using json = nlohmann::json;

std::shared_ptr<Worker> make_worker(const std::string& url, CircuitBreakerOptions cb = {}) {
  return std::make_shared<Worker>(url, WorkerKind::regular, std::nullopt, cb);
}

TEST(ApproxTree, MatchesTheLongestPrefixAndCountsCharactersPerTenant) {
  ApproxTree tree;
  tree.insert(utf8_chars("hello world"), "a");
  tree.insert(utf8_chars("hello there"), "b");  // splits "hello world" at "hello "
  std::string tenant;
  EXPECT_EQ(tree.prefix_match(utf8_chars("hello wo"), {"a", "b"}, tenant), 8u);
  EXPECT_EQ(tenant, "a");
  EXPECT_EQ(tree.prefix_match(utf8_chars("hello thx"), {"a", "b"}, tenant), 8u);
  EXPECT_EQ(tenant, "b");
  // Only allowed tenants are returned.
  EXPECT_EQ(tree.prefix_match(utf8_chars("hello wo"), {"b"}, tenant), 8u);
  EXPECT_EQ(tenant, "");
  EXPECT_EQ(tree.char_count("a"), 11);
  EXPECT_EQ(tree.char_count("b"), 11);
  // Characters, not bytes.
  tree.insert(utf8_chars("héllo"), "c");
  EXPECT_EQ(tree.char_count("c"), 5);
}

TEST(ApproxTree, EvictsTheLeastRecentlyUsedLeavesOverTheLimit) {
  ApproxTree tree;
  tree.insert(utf8_chars("aaaa1111"), "t");
  tree.insert(utf8_chars("aaaa2222"), "t");
  tree.insert(utf8_chars("bbbb"), "t");
  EXPECT_EQ(tree.char_count("t"), 16);
  std::string tenant;
  tree.prefix_match(utf8_chars("aaaa1111"), {"t"}, tenant);  // the oldest leaf is now "2222"
  tree.evict(12);
  EXPECT_EQ(tree.char_count("t"), 12);
  EXPECT_EQ(tree.prefix_match(utf8_chars("aaaa2222"), {"t"}, tenant), 4u);
  EXPECT_EQ(tree.prefix_match(utf8_chars("aaaa1111"), {"t"}, tenant), 8u);
}

TEST(CacheAwarePolicy, FollowsThePrefixWhenBalancedAndTheLoadWhenNot) {
  CacheAwareOptions options;
  options.balance_abs_threshold = 2;
  CacheAwarePolicy policy(options);
  WorkerList workers = {make_worker("http://a:1"), make_worker("http://b:1")};
  auto first = policy.select(workers, "a long shared prefix, then 1");
  auto second = policy.select(workers, "something else entirely");
  EXPECT_NE(first, second);  // the smaller tree
  EXPECT_EQ(policy.select(workers, "a long shared prefix, then 2"), first);
  first->load = 10;  // imbalanced: the least loaded wins whatever the prefix
  EXPECT_EQ(policy.select(workers, "a long shared prefix, then 3"), second);
}

TEST(CircuitBreaker, OpensAfterFailuresHalfOpensAfterTheTimeoutAndCloses) {
  CircuitBreakerOptions options;
  options.failure_threshold = 2;
  options.success_threshold = 2;
  options.timeout_s = 0;
  CircuitBreaker cb(options);
  cb.record(false);
  EXPECT_EQ(cb.state_name(), "closed");
  cb.record(false);
  // timeout 0: open turns half-open at the next look.
  EXPECT_TRUE(cb.can_execute());
  EXPECT_EQ(cb.state_name(), "half_open");
  cb.record(true);
  EXPECT_EQ(cb.state_name(), "half_open");
  cb.record(true);
  EXPECT_EQ(cb.state_name(), "closed");
  options.timeout_s = 600;
  CircuitBreaker slow(options);
  slow.record(false);
  slow.record(false);
  EXPECT_FALSE(slow.can_execute());
}

TEST(RouterBootstrap, InjectsHostPortAndRoomsPerItem) {
  Worker prefill("http://10.0.0.7:30000", WorkerKind::prefill, 8998, {});
  json single = {{"text", "x"}};
  Router::inject_bootstrap(single, prefill, 0);
  EXPECT_EQ(single["bootstrap_host"], "10.0.0.7");
  EXPECT_EQ(single["bootstrap_port"], 8998);
  EXPECT_TRUE(single["bootstrap_room"].is_number_unsigned());
  EXPECT_LT(single["bootstrap_room"].get<uint64_t>(), uint64_t{1} << 63);
  Worker no_port("http://[::1]:30000", WorkerKind::prefill, std::nullopt, {});
  json batch = {{"text", {"a", "b"}}};
  Router::inject_bootstrap(batch, no_port, 2);
  EXPECT_EQ(batch["bootstrap_host"], json({"::1", "::1"}));
  EXPECT_EQ(batch["bootstrap_port"], json({nullptr, nullptr}));
  EXPECT_EQ(batch["bootstrap_room"].size(), 2u);
  EXPECT_NE(batch["bootstrap_room"][0], batch["bootstrap_room"][1]);
}

TEST(SseLogprobMerger, RewritesWholeEventsAcrossChunkBoundaries) {
  SseLogprobMerger merger(json::array({json::array({-1.0, 1, nullptr})}));
  std::string event =
      "data: {\"meta_info\":{\"input_token_logprobs\":[[-2.0,2,null]]}}\n\ndata: [DONE]\n\n";
  std::string out = merger.feed(event.substr(0, 20));
  EXPECT_EQ(out, "");
  out += merger.feed(event.substr(20));
  out += merger.finish();
  EXPECT_EQ(out,
            "data: {\"meta_info\":{\"input_token_logprobs\":[[-1.0,1,null],[-2.0,2,null]]}}\n\n"
            "data: [DONE]\n\n");
}

}  // namespace
}  // namespace epserve
