#include "runtime/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "runtime/generator.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

std::string fixture(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

GenerateInput make_input(const std::string& rid, std::vector<int32_t> ids, int64_t max_new) {
  GenerateInput in;
  in.rid = rid;
  in.input_ids = std::move(ids);
  in.max_new_tokens = max_new;
  in.sampling.temperature = 0.0f;
  in.ignore_eos = true;
  return in;
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + (i * 37 + salt * 101) % 1000);
  return ids;
}

// Runs the scheduler until idle; returns rid -> (tokens, last output).
struct Collected {
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, TokenOutput> last;
};

void drain(Scheduler& s, Collected& c, std::vector<TokenOutput> out = {}) {
  for (int guard = 0; guard < 10000; ++guard) {
    for (auto& o : out) {
      auto& t = c.tokens[o.rid];
      t.insert(t.end(), o.token_ids.begin(), o.token_ids.end());
      c.last[o.rid] = o;
    }
    out.clear();
    if (!s.has_work()) return;
    s.step(out);
  }
  FAIL() << "scheduler did not drain";
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reference_model_ = load_causal_lm(fixture("deepseek_v3_tiny"));
    for (int i = 0; i < 6; ++i) {
      GenerateRequest r;
      r.input_ids = prompt(5 + 9 * i, i);
      r.max_new_tokens = 12;
      r.sampling.temperature = 0.0f;
      r.ignore_eos = true;
      requests_.push_back(r);
    }
    expected_ = generate(*reference_model_, requests_);
  }

  void run_and_check(SchedulerConfig config, int64_t kv_slots, int64_t* retractions = nullptr) {
    LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), kv_slots);
    Scheduler s(runner, config);
    std::vector<TokenOutput> out;
    for (size_t i = 0; i < requests_.size(); ++i) {
      s.add(make_input("r" + std::to_string(i), requests_[i].input_ids, 12), out);
    }
    Collected c;
    drain(s, c, out);
    for (size_t i = 0; i < requests_.size(); ++i) {
      std::string rid = "r" + std::to_string(i);
      EXPECT_EQ(c.tokens[rid], expected_[i].output_ids) << rid;
      EXPECT_TRUE(c.last[rid].finished);
      EXPECT_EQ(c.last[rid].finish_reason, "length");
    }
    EXPECT_EQ(s.used_tokens(), 0);
    if (retractions) *retractions = s.stats().retractions;
  }

  std::unique_ptr<CausalLM> reference_model_;
  std::vector<GenerateRequest> requests_;
  std::vector<GenerateResult> expected_;
};

TEST_F(SchedulerTest, ContinuousBatchingGivesTheTokensOfOfflineGeneration) {
  run_and_check(SchedulerConfig{}, 4096);
}

TEST_F(SchedulerTest, ChunkedPrefillAndMixedBatches) {
  SchedulerConfig config;
  config.chunked_prefill_size = 7;
  run_and_check(config, 4096);
  config.enable_mixed_chunk = true;
  config.page_size = 4;
  run_and_check(config, 4096);
}

TEST_F(SchedulerTest, ATightCacheRetractsAndResumesWithoutChangingTokens) {
  SchedulerConfig config;
  config.page_size = 4;
  config.enable_prefix_cache = false;
  int64_t retractions = 0;
  // The longest request needs 50 + 12 slots; all six together need far more than 96.
  run_and_check(config, 96, &retractions);
  EXPECT_GT(retractions, 0);
}

TEST_F(SchedulerTest, PrefixCacheReusesPagesAndFlushEmptiesIt) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.page_size = 4;
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  s.add(make_input("a", requests_[3].input_ids, 12), out);
  Collected first;
  drain(s, first, out);
  EXPECT_EQ(first.last["a"].cached_tokens, 0);
  EXPECT_GT(s.cached_tokens(), 0);
  s.add(make_input("b", requests_[3].input_ids, 12), out);
  Collected second;
  drain(s, second, out);
  // 32-token prompt: 28 tokens (7 whole pages, leaving the last token to compute) come cached.
  EXPECT_EQ(second.last["b"].cached_tokens, 28);
  EXPECT_EQ(second.tokens["b"], expected_[3].output_ids);
  EXPECT_TRUE(s.flush_cache());
  EXPECT_EQ(s.cached_tokens(), 0);
  s.add(make_input("c", requests_[3].input_ids, 12), out);
  Collected third;
  drain(s, third, out);
  EXPECT_EQ(third.last["c"].cached_tokens, 0);
}

TEST_F(SchedulerTest, AbortFreesPagesAtOnce) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.enable_prefix_cache = false;
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  s.add(make_input("a", requests_[5].input_ids, 100), out);
  s.add(make_input("b", requests_[4].input_ids, 100), out);
  s.step(out);
  s.step(out);
  EXPECT_GT(s.used_tokens(), 0);
  out.clear();
  s.abort("a", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].finish_reason, "abort");
  s.abort("", out);
  EXPECT_EQ(s.used_tokens(), 0);
  EXPECT_FALSE(s.has_work());
}

TEST_F(SchedulerTest, APrefillRequestAbortedWhileQueuedTellsItsDecodeServer) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.disaggregation_mode = "prefill";
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  GenerateInput in = make_input("queued", requests_[0].input_ids, 8);
  in.bootstrap_room = 7;
  s.add(in, out);  // not stepped: still in the queue
  s.abort("queued", out);
  std::vector<DisaggOutput> told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].rid, "queued");
  EXPECT_EQ(told[0].body["transfer"]["ok"], false);
  EXPECT_EQ(told[0].body["transfer"]["room"], 7);
  EXPECT_FALSE(s.has_work());
}

GenerateInput disagg_input(const std::string& rid, std::vector<int32_t> ids, int64_t room) {
  GenerateInput in = make_input(rid, std::move(ids), 8);
  in.bootstrap_host = "127.0.0.1";
  in.bootstrap_port = 1;
  in.bootstrap_room = room;
  return in;
}

// Decode: a request whose slots went out to a prefill server keeps its pages after it ends here
// (aborted, timed out, or a transfer failed with puts in flight) until the prefill side answers
// that nothing more will be written. Before, an abort freed them at once.
TEST_F(SchedulerTest, ADecodeRequestEndedBeforeItsKvKeepsItsPagesUntilThePrefillSideAnswers) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.disaggregation_mode = "decode";
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  s.add(disagg_input("a", requests_[1].input_ids, 11), out);
  s.add(disagg_input("b", requests_[2].input_ids, 12), out);
  s.add(disagg_input("c", requests_[3].input_ids, 13), out);
  s.poll_disagg(out);
  std::vector<DisaggOutput> told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 3u);
  EXPECT_TRUE(told[0].body.contains("slots"));
  const int64_t reserved = s.used_tokens();
  EXPECT_GT(reserved, 0);

  // The client of "a" hangs up: it ends now, the relay is asked to cancel, the pages stay.
  out.clear();
  s.abort("a", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].finish_reason, "abort");
  told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].rid, "a");
  EXPECT_TRUE(told[0].body.contains("cancel"));
  EXPECT_EQ(s.used_tokens(), reserved);
  // The same rid cannot come back while its pages are held (the relay names requests by rid).
  out.clear();
  s.add(disagg_input("a", requests_[1].input_ids, 14), out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].error, HasSubstr("still in use"));
  // An unsettled answer keeps them; the prefill side's settled answer frees them.
  s.disagg({"a", {{"error", "x"}, {"status", 502}, {"unsettled", true}}}, out);
  EXPECT_EQ(s.used_tokens(), reserved);
  s.disagg({"a", {{"released", true}}}, out);
  const int64_t after_a = s.used_tokens();
  EXPECT_LT(after_a, reserved);

  // "b": the prefill side failed with puts in flight: the client gets the error, the pages
  // stay until the relay's release.
  out.clear();
  s.disagg({"b", {{"error", "transfer timeout"}, {"status", 502}, {"unsettled", true}}}, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].error, "transfer timeout");
  EXPECT_EQ(out[0].error_status, 502);
  EXPECT_EQ(s.used_tokens(), after_a);
  EXPECT_TRUE(s.take_disagg_outputs().empty());  // the relay is already cancelling
  s.disagg({"b", {{"released", true}}}, out);
  const int64_t after_b = s.used_tokens();
  EXPECT_LT(after_b, after_a);

  // "c": a settled failure frees at once.
  out.clear();
  s.disagg({"c", {{"error", "the prefill request failed"}, {"status", 400}}}, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(s.used_tokens(), 0);
}

// Prefill: the decode side's cancel stops the request wherever it is and frees its pages; the
// answer (for the bootstrap service) says nothing was sent.
TEST_F(SchedulerTest, APrefillRequestCancelledByItsDecodeServerStops) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.disaggregation_mode = "prefill";
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  s.add(disagg_input("parked", requests_[1].input_ids, 21), out);
  Collected c;
  drain(s, c, out);  // computes the prompt; the request parks without a target
  EXPECT_GT(s.used_tokens(), 0);
  out.clear();
  s.add(disagg_input("queued", requests_[2].input_ids, 22), out);
  s.disagg({"parked", {{"cancel", true}}}, out);
  s.disagg({"queued", {{"cancel", true}}}, out);
  s.disagg({"unknown", {{"cancel", true}}}, out);
  std::vector<DisaggOutput> told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 3u);
  for (const auto& t : told) {
    EXPECT_EQ(t.body["transfer"]["ok"], false) << t.rid;
    EXPECT_NE(t.body["transfer"].value("settled", true), false) << t.rid;
  }
  EXPECT_EQ(told[0].body["transfer"]["status"], 499);
  EXPECT_EQ(told[0].body["transfer"]["room"], 21);
  EXPECT_EQ(told[1].body["transfer"]["room"], 22);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_THAT(out[0].error, HasSubstr("cancelled"));
  EXPECT_THAT(out[1].error, HasSubstr("cancelled"));
  EXPECT_EQ(s.used_tokens(), 0);
  EXPECT_FALSE(s.has_work());
}

// Prefill: a send that failed with puts in flight is answered "settled": false, and the decode
// side is told once no rank drains into that decode server's ranks any more (another decode
// server's drain does not hold it up).
TEST_F(SchedulerTest, AFailedSendWithPutsInFlightIsAnsweredOnceDrained) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.disaggregation_mode = "prefill";
  Scheduler s(runner, config);
  std::vector<std::string> in_flight;
  s.set_kv_sender([&](const nlohmann::json& target, const std::vector<int32_t>&) -> int64_t {
    in_flight.push_back(target["ranks"][0]["address"].get<std::string>());
    throw std::runtime_error("not complete at the decode rank (transfer timeout)");
  });
  s.set_kv_drain_check([&] { return in_flight; });
  std::vector<TokenOutput> out;
  s.add(disagg_input("r", requests_[1].input_ids, 31), out);
  s.add(disagg_input("q", requests_[2].input_ids, 32), out);
  Collected c;
  drain(s, c, out);
  out.clear();
  auto target = [&](const std::string& address, size_t n) {
    return nlohmann::json{
        {"target", {{"slots", std::vector<int32_t>(n, 0)}, {"ranks", {{{"address", address}}}}}}};
  };
  s.disagg({"r", target("decode-a", requests_[1].input_ids.size())}, out);
  s.disagg({"q", target("decode-b", requests_[2].input_ids.size())}, out);
  s.poll_disagg(out);
  std::vector<DisaggOutput> told = s.take_disagg_outputs();
  ASSERT_GE(told.size(), 2u);
  for (const auto& t : told) {
    if (!t.body["transfer"].contains("settled")) continue;  // the end of the request, after it
    EXPECT_EQ(t.body["transfer"]["ok"], false);
    EXPECT_EQ(t.body["transfer"]["settled"], false);
  }
  EXPECT_EQ(s.used_tokens(), 0);  // the prefill side's own pages are free at once
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  s.poll_disagg(out);
  EXPECT_TRUE(s.take_disagg_outputs().empty());  // both still draining
  in_flight = {"decode-b"};                      // decode-a's drain completed
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  s.poll_disagg(out);
  told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].rid, "r");
  EXPECT_EQ(told[0].body["drained"], true);
  EXPECT_EQ(told[0].body["room"], 31);
  in_flight.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  s.poll_disagg(out);
  told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].rid, "q");
}

// Prefill: a KV send runs while the scheduler goes on with other batches; the request keeps its
// pages until the send has finished, also when it is aborted meanwhile (its client gets the
// answer at once, the decode side the send's own result). Before, the send blocked the
// scheduler for up to the transfer timeout.
TEST_F(SchedulerTest, ThePrefillSchedulerGoesOnWhileAKvSendIsInFlight) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  SchedulerConfig config;
  config.disaggregation_mode = "prefill";
  Scheduler s(runner, config);
  std::vector<int64_t> started;
  std::vector<KvSendResult> finished;
  s.set_kv_async_sender([&](int64_t id, const nlohmann::json&,
                            const std::vector<int32_t>&) { started.push_back(id); },
                        [&] { return std::exchange(finished, {}); });
  std::vector<TokenOutput> out;
  auto target = [](size_t n) {
    return nlohmann::json{
        {"target",
         {{"slots", std::vector<int32_t>(n, 0)}, {"ranks", {{{"address", "decode-a"}}}}}}};
  };
  s.add(disagg_input("first", requests_[1].input_ids, 41), out);
  s.disagg({"first", target(requests_[1].input_ids.size())}, out);  // early target
  Collected c;
  drain(s, c, out);
  out.clear();
  s.poll_disagg(out);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_TRUE(s.sending_kv());
  EXPECT_TRUE(s.take_disagg_outputs().empty());
  const int64_t first_pages = s.used_tokens();
  EXPECT_GT(first_pages, 0);
  // Another request is computed meanwhile.
  s.add(disagg_input("second", requests_[2].input_ids, 42), out);
  drain(s, c, out);
  EXPECT_EQ(s.stats_json()["num_prefill_inflight_queue_reqs"], 2);  // computed, parked
  EXPECT_GT(s.used_tokens(), first_pages);
  EXPECT_TRUE(s.sending_kv());
  // "first" is aborted: its client has the answer now, its pages stay while the puts read them.
  out.clear();
  s.abort("first", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].finish_reason, "abort");
  EXPECT_TRUE(s.take_disagg_outputs().empty());  // the send's result tells the decode side
  EXPECT_GE(s.used_tokens(), first_pages);
  const int64_t before = s.used_tokens();
  finished.push_back({started[0], 1234, ""});
  out.clear();
  s.poll_disagg(out);
  EXPECT_FALSE(s.sending_kv());
  std::vector<DisaggOutput> told = s.take_disagg_outputs();
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].rid, "first");
  EXPECT_EQ(told[0].body["transfer"]["ok"], true);
  EXPECT_EQ(told[0].body["transfer"]["bytes"], 1234);
  EXPECT_TRUE(out.empty());  // no second answer to the client
  EXPECT_LT(s.used_tokens(), before);
}

TEST_F(SchedulerTest, InvalidRequestsComeBackWithAnError) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 64);
  SchedulerConfig config;
  config.context_length = 40;
  Scheduler s(runner, config);
  std::vector<TokenOutput> out;
  s.add(make_input("long", prompt(41, 0), 4), out);
  s.add(make_input("vocab", {5, 5000}, 4), out);
  s.add(make_input("empty", {}, 4), out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_THAT(out[0].error, HasSubstr("longer than the model's context length"));
  EXPECT_THAT(out[1].error, HasSubstr("out-of-vocabulary"));
  EXPECT_THAT(out[2].error, HasSubstr("empty"));
  EXPECT_FALSE(s.has_work());
}

TEST_F(SchedulerTest, LogprobsMatchTheLogitsAndStopTokensEndRequests) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  Scheduler s(runner, SchedulerConfig{});
  GenerateInput in = make_input("lp", requests_[2].input_ids, 12);
  in.return_logprob = true;
  in.top_logprobs_num = 3;
  in.logprob_start_len = 0;
  in.stop_token_ids = {expected_[2].output_ids[4]};
  in.ignore_eos = false;  // which would ignore stop_token_ids too (SGLang)
  std::vector<TokenOutput> out;
  s.add(in, out);
  Collected c;
  std::vector<TokenOutput> all;
  for (int i = 0; i < 100 && s.has_work(); ++i) s.step(all);
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<float> input_logprobs;
  for (auto& o : all) {
    tokens.insert(tokens.end(), o.token_ids.begin(), o.token_ids.end());
    logprobs.insert(logprobs.end(), o.logprobs.begin(), o.logprobs.end());
    if (!o.input_logprobs.empty()) input_logprobs = o.input_logprobs;
    for (auto& top : o.top_logprobs) {
      ASSERT_EQ(top.size(), 3u);
      EXPECT_GE(top[0].logprob, top[1].logprob);
    }
  }
  // Stops at the first occurrence of the stop token (greedy, so at index <= 4).
  std::vector<int32_t> expect(expected_[2].output_ids.begin(), expected_[2].output_ids.begin() + 5);
  auto first = std::find(expect.begin(), expect.end(), expected_[2].output_ids[4]);
  expect.erase(first + 1, expect.end());
  EXPECT_EQ(tokens, expect);
  EXPECT_EQ(all.back().finish_reason, "stop");
  EXPECT_EQ(all.back().matched_stop_token, expected_[2].output_ids[4]);
  // Greedy: each chosen token's logprob is the top logprob.
  ASSERT_EQ(logprobs.size(), tokens.size());
  for (auto& o : all) {
    for (size_t i = 0; i < o.token_ids.size(); ++i) {
      EXPECT_EQ(o.top_logprobs[i][0].id, o.token_ids[i]);
      EXPECT_EQ(o.top_logprobs[i][0].logprob, o.logprobs[i]);
    }
  }
  // Input logprobs: position 0 has none; the rest are log-probabilities.
  ASSERT_EQ(input_logprobs.size(), requests_[2].input_ids.size());
  EXPECT_TRUE(std::isnan(input_logprobs[0]));
  for (size_t i = 1; i < input_logprobs.size(); ++i) EXPECT_LT(input_logprobs[i], 0.0f);
}

TEST_F(SchedulerTest, IgnoreEosAlsoIgnoresStopTokenIds) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  Scheduler s(runner, SchedulerConfig{});
  GenerateInput in = make_input("ignore", requests_[2].input_ids, 12);
  in.stop_token_ids = {expected_[2].output_ids[4]};
  std::vector<TokenOutput> out;
  s.add(in, out);
  Collected c;
  drain(s, c, out);
  EXPECT_EQ(c.tokens["ignore"], expected_[2].output_ids);
  EXPECT_EQ(c.last["ignore"].finish_reason, "length");
}

TEST_F(SchedulerTest, MaxNewTokensZeroOnlyPrefills) {
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  Scheduler s(runner, SchedulerConfig{});
  GenerateInput in = make_input("score", requests_[1].input_ids, 0);
  in.return_logprob = true;
  in.logprob_start_len = 0;
  std::vector<TokenOutput> out;
  s.add(in, out);
  Collected c;
  drain(s, c, out);
  EXPECT_TRUE(c.tokens["score"].empty());
  const TokenOutput& last = c.last["score"];
  EXPECT_TRUE(last.finished);
  EXPECT_EQ(last.finish_reason, "length");
  EXPECT_TRUE(last.error.empty());
  EXPECT_EQ(last.input_logprobs.size(), requests_[1].input_ids.size());
  EXPECT_FALSE(s.has_work());
}

// A burst of prompts (16 clients sending at once) shares the default per-step prompt budget:
// the oldest prompts that fit get their first token after the first step instead of every
// prompt waiting for the whole burst's prefill, and the tokens stay those of offline generation.
TEST_F(SchedulerTest, ABurstOfPromptsGetsItsFirstTokensStepByStep) {
  std::vector<GenerateRequest> burst;
  for (int i = 0; i < 8; ++i) {
    GenerateRequest r;
    r.input_ids = prompt(128, 20 + i);
    r.max_new_tokens = 4;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    burst.push_back(r);
  }
  std::vector<GenerateResult> expected = generate(*reference_model_, burst);
  LocalModelRunner runner(load_causal_lm(fixture("deepseek_v3_tiny")), 4096);
  Scheduler s(runner, SchedulerConfig{});
  std::vector<TokenOutput> out;
  for (size_t i = 0; i < burst.size(); ++i) {
    s.add(make_input("b" + std::to_string(i), burst[i].input_ids, 4), out);
  }
  ASSERT_TRUE(out.empty());
  auto rids = [](const std::vector<TokenOutput>& outputs) {
    std::set<std::string> r;
    for (const TokenOutput& o : outputs) r.insert(o.rid);
    return r;
  };
  Collected c;
  std::vector<TokenOutput> step_out;
  s.step(step_out);
  EXPECT_EQ(rids(step_out), (std::set<std::string>{"b0", "b1", "b2", "b3"}));
  EXPECT_EQ(s.stats().prefill_tokens, 512);
  drain(s, c, step_out);
  for (size_t i = 0; i < burst.size(); ++i) {
    EXPECT_EQ(c.tokens["b" + std::to_string(i)], expected[i].output_ids) << i;
  }
}

}  // namespace
}  // namespace epserve
