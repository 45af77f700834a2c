// The frontend's ZeroMQ link against a scripted scheduler on the other end of the sockets:
// readiness, outputs routed to their request, control answers per DP group, aborts when a
// request is dropped or stopped, and shutdown.
#include "server/frontend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include "runtime/ipc.h"

#include "server/errors.h"
#include "server/metrics.h"

namespace epserve {
namespace {

using namespace std::chrono_literals;

std::string fresh_base() {
  static std::atomic<int> n{0};
  return "ipc:///tmp/epserve-frontend-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

// A scheduler for one DP group: sends ready, answers controls, and for each generate sends
// `tokens` one per message (finishing with "length") unless `hold` keeps the request open.
class FakeScheduler {
 public:
  // slots_on_abort: answers an abort with a DisaggOutput of reserved slots, as a decode
  // scheduler does for a request aborted while its pages were being reserved.
  FakeScheduler(const std::string& base, int dp_rank, int tokens, bool hold = false,
                bool slots_on_abort = false)
      : in_(context_, IpcSocket::Kind::kPull),
        out_(context_, IpcSocket::Kind::kPush, 0),
        slots_on_abort_(slots_on_abort) {
    in_.connect(base + "-in-" + std::to_string(dp_rank));
    out_.connect(base + "-out");
    thread_ = std::thread([=, this] { run(dp_rank, tokens, hold); });
  }
  // A scheduler on another node: CURVE with the job's secret, over the given endpoints.
  FakeScheduler(const ControlPlaneEndpoints& frontend, const std::string& job_secret, int dp_rank,
                int tokens)
      : in_(context_, IpcSocket::Kind::kPull), out_(context_, IpcSocket::Kind::kPush, 0) {
    in_.secure_as_client(job_secret);
    in_.connect(frontend.in[dp_rank]);
    out_.secure_as_client(job_secret);
    out_.connect(frontend.out);
    thread_ = std::thread([=, this] { run(dp_rank, tokens, false); });
  }
  ~FakeScheduler() {
    stop_ = true;
    thread_.join();
  }
  std::set<std::string> aborted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return aborted_;
  }
  std::vector<std::string> commands() {
    std::lock_guard<std::mutex> lock(mutex_);
    return commands_;
  }
  int wakeups() const { return wakeups_.load(); }
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

 private:
  void send(const FrontendMessage& m) {
    // Never blocks: after the frontend has gone there is nobody to send to.
    (void)out_.send(encode(m), /*wait=*/false);
  }
  void run(int dp_rank, int tokens, bool hold) {
    send(ControlOutput{0, {{"ready", true}, {"dp_rank", dp_rank}, {"max_total_num_tokens", 64}}});
    while (!stop_) {
      std::optional<std::string> bytes = in_.receive();
      if (!bytes) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      if (bytes->empty()) {  // the frontend's wake-up: another group got work
        ++wakeups_;
        continue;
      }
      SchedulerMessage m = decode_scheduler_message(*bytes);
      if (auto* input = std::get_if<GenerateInput>(&m)) {
        const GenerateInput& in = *input;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          received_.push_back(in.rid);
        }
        for (int i = 0; i < tokens; ++i) {
          TokenOutput out;
          out.rid = in.rid;
          out.token_ids = {100 + i};
          out.prompt_tokens = static_cast<int64_t>(in.input_ids.size());
          out.finished = !hold && i + 1 == tokens;
          if (out.finished) out.finish_reason = "length";
          send(OutputBatch{{out}});
        }
      } else if (auto* abort = std::get_if<AbortInput>(&m)) {
        if (slots_on_abort_) send(DisaggOutput{abort->rid, {{"slots", {7, 8}}}, dp_rank});
        std::lock_guard<std::mutex> lock(mutex_);
        aborted_.insert(abort->rid);
      } else {
        const ControlInput& control = std::get<ControlInput>(m);
        {
          std::lock_guard<std::mutex> lock(mutex_);
          commands_.push_back(control.command);
        }
        send(ControlOutput{control.id,
                           {{"ok", true}, {"dp_rank", dp_rank}, {"num_running_reqs", dp_rank}}});
      }
    }
  }

  IpcContext context_;
  IpcSocket in_, out_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> wakeups_{0};
  bool slots_on_abort_ = false;
  std::mutex mutex_;
  std::set<std::string> aborted_;
  std::vector<std::string> commands_;
  std::vector<std::string> received_;  // rids of the GenerateInputs
};

GenerateInput input(const std::string& rid) {
  GenerateInput in;
  in.rid = rid;
  in.input_ids = {1, 2, 3};
  in.max_new_tokens = 8;
  return in;
}

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// DP groups led from other nodes: the sockets also listen on tcp:// (CURVE with the job's
// secret); a group's scheduler there and one on this node's ipc:// both serve.
TEST(Frontend, GroupsOnOtherNodesReachItOverTcp) {
  Metrics metrics("m");
  const std::string secret = "frontend-test-secret-0123456789";
  std::string base = fresh_base();
  FrontendOptions options{base, 2, "round_robin"};
  options.tcp_bind = "tcp://127.0.0.1:*";
  options.job_secret = secret;
  Frontend f(options, &metrics);
  f.start();
  ControlPlaneEndpoints tcp = f.tcp_endpoints();
  ASSERT_EQ(tcp.in.size(), 2u);
  EXPECT_EQ(tcp.out.rfind("tcp://127.0.0.1:", 0), 0u) << tcp.out;
  ControlPlaneEndpoints local = ControlPlaneEndpoints::ipc(base, 2);
  FakeScheduler here(local, secret, 0, 2);  // node 0's leader: ipc://, secured too
  FakeScheduler there(tcp, secret, 1, 2);   // another node's leader: tcp://
  ASSERT_TRUE(f.wait_ready(10s));
  for (const char* rid : {"a", "b"}) {  // round robin: one request per group
    auto g = f.submit({input(rid)});
    OutputEvent ev;
    size_t tokens = 0;
    bool finished = false;
    while (!finished && g->next(ev, 5s)) {
      tokens += ev.output.token_ids.size();
      finished = ev.output.finished;
    }
    EXPECT_TRUE(finished) << rid;
    EXPECT_EQ(tokens, 2u) << rid;
  }
  EXPECT_EQ(ControlPlaneEndpoints::from_json(tcp.to_json()).in, tcp.in);
}

TEST(Frontend, NotReadyRequestsGet503) {
  Metrics metrics("m");
  Frontend f({fresh_base(), 1, "round_robin"}, &metrics);
  f.start();
  EXPECT_FALSE(f.ready());
  try {
    f.submit({input("a")});
    FAIL() << "accepted a request before the scheduler was ready";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 503);
  }
}

TEST(Frontend, OutputsReachTheirRequest) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s(base, 0, 3);
  Frontend f({base, 1, "round_robin"}, &metrics);
  f.start();
  ASSERT_TRUE(f.wait_ready(5s));
  EXPECT_EQ(f.scheduler_info()[0].result["max_total_num_tokens"], 64);
  auto a = f.submit({input("a"), input("b")});
  std::map<size_t, std::vector<int32_t>> tokens;
  int finished = 0;
  OutputEvent ev;
  while (finished < 2 && a->next(ev, 5s)) {
    for (int32_t t : ev.output.token_ids) tokens[ev.index].push_back(t);
    finished += ev.output.finished;
  }
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(tokens[0], (std::vector<int32_t>{100, 101, 102}));
  EXPECT_EQ(tokens[1], (std::vector<int32_t>{100, 101, 102}));
  EXPECT_TRUE(a->all_finished());
  EXPECT_EQ(f.num_requests_in_flight(), 0u);
  a.reset();
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(s.aborted().empty());  // finished requests are not aborted
  std::string text = metrics.render({});
  EXPECT_THAT(text, ::testing::HasSubstr("sglang:generation_tokens_total{model_name=\"m\"} 6"));
}

// One DP group whose scheduler holds every request (answers nothing until aborted), behind a
// started, ready Frontend.
class HeldFrontend : public ::testing::Test {
 protected:
  void SetUp() override {
    f.start();
    ASSERT_TRUE(f.wait_ready(5s));
  }
  Metrics metrics{"m"};
  std::string base = fresh_base();
  FakeScheduler s{base, 0, 1, true};
  Frontend f{{base, 1, "round_robin"}, &metrics};
};

TEST_F(HeldFrontend, DuplicateRidIs400) {
  auto a = f.submit({input("same")});
  EXPECT_THROW(f.submit({input("same")}), ApiError);
  EXPECT_THROW(f.submit({input("x"), input("x")}), ApiError);
}

// PD disaggregation: one live request per bootstrap_room (a second one would be matched to the
// first one's KV target); the room is free again once the request is gone.
TEST_F(HeldFrontend, ABootstrapRoomInUseIs409) {
  GenerateInput a = input("a"), b = input("b"), c = input("c");
  a.bootstrap_room = b.bootstrap_room = c.bootstrap_room = 42;
  auto first = f.submit({a});
  try {
    f.submit({b});
    ADD_FAILURE() << "a second request with room 42 was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 409);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("bootstrap_room 42"));
  }
  // Its refusal is no failure of the first request's room.
  std::vector<nlohmann::json> seen;
  f.set_disagg_handler([&](int, DisaggOutput out) { seen.push_back(out.body); });
  f.fail_room(42, 409, "refused");
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(f.find_room(42)->first, "a");
  GenerateInput other = input("o");
  other.bootstrap_room = 43;
  EXPECT_THROW(f.submit({other, c}), ApiError);  // twice in one batch (43 and 42 is in use)
  GenerateInput d = input("d"), e = input("e");
  d.bootstrap_room = e.bootstrap_room = 44;
  EXPECT_THROW(f.submit({d, e}), ApiError);
  EXPECT_FALSE(f.find_room(44));
  EXPECT_TRUE(f.abort_request("a"));
  first.reset();
  EXPECT_FALSE(f.find_room(42));
  auto again = f.submit({b});  // free again
  EXPECT_EQ(f.find_room(42)->first, "b");
}

// With DP attention on a decode server, a request aborted while its pages were being reserved
// is gone from the frontend when its slots arrive: they must still be handed on as the group
// that reserved them (2 here), never as another group's (the old lookup by rid gave group 0).
TEST(Frontend, DisaggOutputsKeepTheGroupThatSentThem) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s0(base, 0, 1, true), s1(base, 1, 1, true), s2(base, 2, 1, true, true);
  // Before the frontend: its I/O thread may call the handler until the frontend is destroyed
  // (s2 answers the shutdown's aborts with slots too).
  std::mutex mutex;
  std::vector<std::pair<int, DisaggOutput>> seen;
  Frontend f({base, 3, "round_robin"}, &metrics);
  f.set_disagg_handler([&](int dp, DisaggOutput out) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.emplace_back(dp, std::move(out));
  });
  f.start();
  ASSERT_TRUE(f.wait_ready(5s));
  std::vector<std::shared_ptr<RequestGroup>> groups;
  for (int i = 0; i < 3; ++i) groups.push_back(f.submit({input("r" + std::to_string(i))}));
  // Round robin: r2 is group 2's. The client hangs up: its route goes and its scheduler gets an
  // abort, which it answers with the slots it had reserved meanwhile.
  groups[2].reset();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return !seen.empty();
  }));
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(seen[0].first, 2);
  EXPECT_EQ(seen[0].second.rid, "r2");
}

TEST_F(HeldFrontend, DroppingARequestAbortsIt) {
  auto g = f.submit({input("dropped"), input("stopped")});
  OutputEvent ev;
  ASSERT_TRUE(g->next(ev, 5s));
  g->abort(1);
  EXPECT_TRUE(eventually([&] { return s.aborted().count("stopped") == 1; }));
  EXPECT_TRUE(g->finished(1));
  g.reset();
  EXPECT_TRUE(eventually([&] { return s.aborted().count("dropped") == 1; }));
  EXPECT_EQ(f.num_requests_in_flight(), 0u);
}

TEST_F(HeldFrontend, AbortRequestByRid) {
  auto g = f.submit({input("r1")});
  EXPECT_TRUE(f.abort_request("r1"));
  EXPECT_FALSE(f.abort_request("nobody"));
  EXPECT_TRUE(eventually([&] { return s.aborted().count("r1") == 1; }));
  EXPECT_TRUE(f.abort_request(""));
  EXPECT_TRUE(eventually([&] { return s.aborted().count("") == 1; }));
}

TEST(Frontend, ControlCollectsOneAnswerPerGroup) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s0(base, 0, 1, true), s1(base, 1, 1, true);
  Frontend f({base, 2, "total_requests"}, &metrics);
  f.start();
  ASSERT_TRUE(f.wait_ready(5s));
  std::vector<nlohmann::json> stats = f.control("get_stats", 5s);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0]["num_running_reqs"], 0);
  EXPECT_EQ(stats[1]["num_running_reqs"], 1);
  // total_requests balancing: two open requests land on different groups.
  auto a = f.submit({input("a")});
  auto b = f.submit({input("b")});
  EXPECT_NE(a->dp_rank(), b->dp_rank());
}

// SGLang's data_parallel_rank: the request goes to the named group whatever the balancing
// method would pick; a group that does not exist is a 400.
TEST(Frontend, ANamedDpRankGetsTheRequest) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s0(base, 0, 1, true), s1(base, 1, 1, true), s2(base, 2, 1, true);
  Frontend f({base, 3, "round_robin"}, &metrics);
  f.start();
  ASSERT_TRUE(f.wait_ready(5s));
  auto a = f.submit({input("a")}, 2);
  auto b = f.submit({input("b"), input("c")}, 2);
  auto d = f.submit({input("d")}, 1);
  EXPECT_EQ(a->dp_rank(), 2);
  EXPECT_EQ(b->dp_rank(), 2);
  EXPECT_EQ(d->dp_rank(), 1);
  EXPECT_TRUE(eventually([&] { return s2.received().size() == 3 && s1.received().size() == 1; }));
  EXPECT_EQ(s2.received(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s1.received(), (std::vector<std::string>{"d"}));
  EXPECT_TRUE(s0.received().empty());
  // Named ranks leave round robin where it was: the next request goes to group 0.
  auto e = f.submit({input("e")});
  EXPECT_EQ(e->dp_rank(), 0);
  try {
    f.submit({input("f")}, 3);
    FAIL() << "dp rank 3 of 3 groups was accepted";
  } catch (const ApiError& error) {
    EXPECT_EQ(error.status(), 400);
    EXPECT_NE(std::string(error.what()).find("data_parallel_rank must be less than dp_size: 3"),
              std::string::npos)
        << error.what();
  }
}

TEST_F(HeldFrontend, OneGroupTakesDpRankZeroOnly) {
  auto a = f.submit({input("a")}, 0);
  EXPECT_EQ(a->dp_rank(), 0);
  EXPECT_THROW(f.submit({input("b")}, 1), ApiError);
}

TEST(Frontend, ShutdownEndsOpenRequests) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s(base, 0, 1, true);
  auto f = std::make_unique<Frontend>(FrontendOptions{base, 1, "round_robin"}, &metrics);
  f->start();
  ASSERT_TRUE(f->wait_ready(5s));
  auto g = f->submit({input("open")});
  OutputEvent ev;
  ASSERT_TRUE(g->next(ev, 5s));
  f->shutdown();
  ASSERT_TRUE(g->next(ev, 5s));
  EXPECT_TRUE(ev.output.finished);
  EXPECT_EQ(ev.output.finish_reason, "abort");
  EXPECT_EQ(ev.error_status, 503);
  EXPECT_TRUE(eventually([&] {
    auto c = s.commands();
    return std::find(c.begin(), c.end(), "shutdown") != c.end();
  }));
  EXPECT_THROW(f->submit({input("late")}), ApiError);
  g.reset();
}

// DP attention: every group joins each step, so a request for one group wakes the others from
// their idle poll (an empty message) instead of letting them sleep out their poll interval.
TEST(Frontend, WorkForOneGroupWakesTheOthers) {
  Metrics metrics("m");
  std::string base = fresh_base();
  FakeScheduler s0(base, 0, 1, true), s1(base, 1, 1, true);
  Frontend f({base, 2, "round_robin"}, &metrics);
  f.start();
  ASSERT_TRUE(f.wait_ready(5s));
  // A round trip to both groups first: a group's socket may not be connected when it says it is
  // ready, and a wake-up for a group that is not connected yet is dropped (nobody to wake).
  ASSERT_EQ(f.control("get_stats", 5s).size(), 2u);
  const int before0 = s0.wakeups(), before1 = s1.wakeups();
  auto a = f.submit({input("a")});
  FakeScheduler& other = a->dp_rank() == 0 ? s1 : s0;
  const int other_before = a->dp_rank() == 0 ? before1 : before0;
  EXPECT_TRUE(eventually([&] { return other.wakeups() > other_before; }));
}

}  // namespace
}  // namespace epserve
