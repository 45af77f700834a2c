// A rank's KV sends on a thread of their own (runtime/kv_send_queue.h): start() returns at once,
// results come back by id, the drain list never waits for a send; the leader's sum over ranks.
#include "runtime/kv_send_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

namespace epserve {
namespace {

using namespace std::chrono_literals;

// Sends block until released; a target {"fail": true} fails and leaves its rank "draining".
class BlockingAgent : public KvTransferAgent {
 public:
  void attach(const KvMemory&) override {}
  nlohmann::json describe() const override { return {}; }
  int64_t send(const nlohmann::json& target, const std::vector<int32_t>& slots) override {
    std::unique_lock<std::mutex> lock(mutex_);
    ++started_;
    cv_.wait(lock, [&] { return released_; });
    if (target.value("fail", false)) {
      draining_ = {"decode-a"};
      throw std::runtime_error("transfer timeout");
    }
    return static_cast<int64_t>(slots.size());
  }
  std::vector<std::string> draining() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return draining_;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }
  int started() {
    std::lock_guard<std::mutex> lock(mutex_);
    return started_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool released_ = false;
  int started_ = 0;
  std::vector<std::string> draining_;
};

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 5000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

TEST(KvSendQueue, SendsRunBesideTheCallerAndComeBackById) {
  BlockingAgent agent;
  KvSendQueue queue(agent);
  queue.start(7, nlohmann::json::object(), {1, 2, 3});
  queue.start(8, {{"fail", true}}, {1});
  ASSERT_TRUE(eventually([&] { return agent.started() == 1; }));
  EXPECT_TRUE(queue.take_done().empty());  // in flight: nothing yet, and no waiting for it
  EXPECT_TRUE(queue.draining().empty());
  agent.release();
  std::vector<KvSendResult> done;
  ASSERT_TRUE(eventually([&] {
    for (auto& d : queue.take_done()) done.push_back(d);
    return done.size() == 2;
  }));
  EXPECT_EQ(done[0].id, 7);
  EXPECT_EQ(done[0].bytes, 3);
  EXPECT_EQ(done[0].error, "");
  EXPECT_EQ(done[1].id, 8);
  EXPECT_EQ(done[1].error, "transfer timeout");
  // The failed send's drain was recorded before its result came out.
  EXPECT_EQ(queue.draining(), std::vector<std::string>{"decode-a"});
}

// A send still queued behind another is dropped on cancel and comes back cancelled; one in
// progress goes on.
TEST(KvSendQueue, ACancelledSendThatHasNotStartedIsDropped) {
  BlockingAgent agent;
  KvSendQueue queue(agent);
  queue.start(1, nlohmann::json::object(), {1, 2});
  queue.start(2, nlohmann::json::object(), {1, 2, 3});
  ASSERT_TRUE(eventually([&] { return agent.started() == 1; }));
  queue.cancel(1);  // in progress: not dropped
  queue.cancel(2);
  std::vector<KvSendResult> done = queue.take_done();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, 2);
  EXPECT_TRUE(done[0].cancelled);
  EXPECT_EQ(done[0].bytes, 0);
  agent.release();
  ASSERT_TRUE(eventually([&] {
    for (auto& d : queue.take_done()) done.push_back(d);
    return done.size() == 2;
  }));
  EXPECT_EQ(done[1].id, 1);
  EXPECT_EQ(done[1].bytes, 2);
  EXPECT_FALSE(done[1].cancelled);
  EXPECT_EQ(agent.started(), 1);  // the cancelled one never reached the agent
}

TEST(KvGroupSends, ASendIsCancelledOnlyIfNoRankStartedIt) {
  KvGroupSends group;
  auto answer = [](std::vector<KvSendResult> r) {
    return nlohmann::json{{"done", to_json_list(r)}}.dump();
  };
  KvSendResult dropped{1, 0, "cancelled before it started", true};
  std::vector<KvSendResult> done = group.add_answers({answer({dropped}), answer({dropped})});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].cancelled);
  done = group.add_answers(
      {answer({{2, 0, "cancelled before it started", true}}), answer({{2, 0, "timeout"}})});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[0].cancelled);  // rank 1 started it: its puts may be in flight
}

TEST(KvGroupSends, ASendIsDoneWhenEveryRankHasFinishedIt) {
  KvGroupSends group;
  auto answer = [](std::vector<KvSendResult> r) {
    return nlohmann::json{{"done", to_json_list(r)}}.dump();
  };
  EXPECT_TRUE(group.add_answers({answer({{1, 10, ""}}), answer({})}).empty());
  std::vector<KvSendResult> done =
      group.add_answers({answer({{2, 5, ""}}), answer({{1, 20, ""}, {2, 0, "timeout"}})});
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].id, 1);
  EXPECT_EQ(done[0].bytes, 30);
  EXPECT_EQ(done[0].error, "");
  EXPECT_EQ(done[1].id, 2);
  EXPECT_EQ(done[1].error, "rank 1 of the group: timeout");
}

}  // namespace
}  // namespace epserve
