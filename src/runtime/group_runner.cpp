#include "runtime/group_runner.h"

#include <chrono>

#include "comm/communicator.h"
#include "core/phase_timer.h"

namespace epserve {
namespace {

constexpr int64_t kStop = -1;
constexpr int64_t kControl = -2;  // followed by the command code
constexpr int64_t kTask = -3;     // followed by the payload's size and bytes
// Idle ranks wait this long for the next batch before re-arming the wait; dead peers are still
// noticed at once through the job's abort signal.
constexpr std::chrono::hours kIdleWait{24 * 365};

}  // namespace

GroupLeaderRunner::GroupLeaderRunner(CausalLM& model, int64_t num_kv_slots,
                                     std::shared_ptr<Communicator> group,
                                     const KvAllocator& allocate_kv)
    : local_(model, num_kv_slots, allocate_kv), group_(std::move(group)) {}

GroupLeaderRunner::~GroupLeaderRunner() {
  if (!group_ || group_->size() == 1) return;
  try {
    int64_t stop = kStop;
    group_->set_context("stopping the group");
    group_->broadcast(&stop, sizeof(stop), 0);
  } catch (const Error&) {
    // The job is already failing; the launcher reports the cause.
  }
}

void GroupLeaderRunner::forward(const ForwardBatch& batch, float* logits) {
  if (group_ && group_->size() > 1) {
    PhaseTimer timer("comm");
    std::vector<int32_t> data = batch.serialize();
    int64_t size = static_cast<int64_t>(data.size());
    group_->set_context("sending the next batch");
    group_->broadcast(&size, sizeof(size), 0);
    group_->broadcast(data.data(), data.size() * sizeof(int32_t), 0);
  }
  local_.forward(batch, logits);
}

void GroupLeaderRunner::send_control(int64_t code) {
  if (!group_ || group_->size() == 1) return;
  int64_t message[2] = {kControl, code};
  group_->set_context("sending a command to the group");
  group_->broadcast(&message[0], sizeof(int64_t), 0);
  group_->broadcast(&message[1], sizeof(int64_t), 0);
}

// Every rank's answer to a task, in group rank order.
std::vector<std::string> gather_answers(Communicator& group, const std::string& mine,
                                        const std::string& what) {
  const int n = group.size();
  std::vector<uint64_t> lengths(n);
  uint64_t length = mine.size();
  group.set_context(what);
  group.allgather(&length, sizeof(length), lengths.data());
  std::vector<size_t> bytes(lengths.begin(), lengths.end());
  size_t total = 0;
  for (size_t b : bytes) total += b;
  std::string all(total, '\0');
  group.allgatherv(mine.data(), mine.size(), all.data(), bytes);
  std::vector<std::string> out;
  size_t offset = 0;
  for (size_t b : bytes) {
    out.push_back(all.substr(offset, b));
    offset += b;
  }
  return out;
}

std::vector<std::string> GroupLeaderRunner::run_task(
    const std::string& payload, const std::function<std::string(const std::string&)>& local) {
  if (!group_ || group_->size() == 1) return {local(payload)};
  int64_t message[2] = {kTask, static_cast<int64_t>(payload.size())};
  group_->set_context("sending a task to the group");
  group_->broadcast(&message[0], sizeof(int64_t), 0);
  group_->broadcast(&message[1], sizeof(int64_t), 0);
  std::string copy = payload;
  group_->broadcast(copy.data(), copy.size(), 0);
  return gather_answers(*group_, local(payload), "gathering the answers to a task");
}

void run_group_follower(CausalLM& model, int64_t num_kv_slots, Communicator& group,
                        const std::function<void(int64_t)>& on_control) {
  FollowerHooks hooks;
  hooks.on_control = on_control;
  run_group_follower(model, num_kv_slots, group, hooks);
}

void run_group_follower(CausalLM& model, int64_t num_kv_slots, Communicator& group,
                        const FollowerHooks& hooks) {
  const auto& on_control = hooks.on_control;
  LocalModelRunner local(model, num_kv_slots, hooks.allocate_kv);
  struct StopBeforeTheCache {
    const std::function<void()>& on_stop;
    ~StopBeforeTheCache() {
      if (on_stop) on_stop();
    }
  } stop_first{hooks.on_stop};
  if (hooks.on_start) hooks.on_start(local.cache());
  std::vector<float> logits;
  const auto timeout = group.timeout();
  while (true) {
    int64_t size = 0;
    group.set_context("waiting for the next batch");
    group.set_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(kIdleWait));
    group.broadcast(&size, sizeof(size), 0);
    group.set_timeout(timeout);
    if (size == kStop) return;
    if (size == kControl) {
      int64_t code = 0;
      group.broadcast(&code, sizeof(code), 0);
      if (on_control) on_control(code);
      continue;
    }
    if (size == kTask) {
      int64_t length = 0;
      group.broadcast(&length, sizeof(length), 0);
      std::string payload(static_cast<size_t>(length), '\0');
      group.broadcast(payload.data(), payload.size(), 0);
      std::string answer;
      try {
        answer = hooks.on_task ? hooks.on_task(payload) : std::string();
      } catch (const std::exception& e) {
        answer = std::string("error: ") + e.what();
      }
      gather_answers(group, answer, "gathering the answers to a task");
      continue;
    }
    std::vector<int32_t> data(size);
    group.broadcast(data.data(), data.size() * sizeof(int32_t), 0);
    ForwardBatch batch = ForwardBatch::deserialize(data);
    logits.resize(batch.num_logit_rows() * model.vocab_size());
    local.forward(batch, logits.data());
  }
}

}  // namespace epserve
