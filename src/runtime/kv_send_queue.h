// PD disaggregation, prefill side: a rank's KV sends run on a thread of their own (KvSendQueue),
// so that its scheduler goes on with other batches while a transfer is in flight; the leader
// starts a send on every rank of its group and polls them (KvGroupSends adds up their answers).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/kv_transfer.h"

namespace epserve {

// All of a rank's calls into its agent (send, draining) run on the queue's thread, one at a time.
class KvSendQueue {
 public:
  explicit KvSendQueue(KvTransferAgent& agent);
  // Waits for the send in progress (bounded by the transfer timeout); queued ones are dropped.
  ~KvSendQueue();
  KvSendQueue(const KvSendQueue&) = delete;
  KvSendQueue& operator=(const KvSendQueue&) = delete;

  void start(int64_t id, nlohmann::json target, std::vector<int32_t> slots);
  // Drops send `id` if it has not started: it is reported done, cancelled, with nothing sent.
  // A send in progress goes on (UCX puts cannot be called back).
  void cancel(int64_t id);
  // Sends finished since the last call.
  std::vector<KvSendResult> take_done();
  // The agent's draining() as of its last refresh: after every send (before that send's result
  // is handed out) and every 100 ms while idle. Never waits for a send.
  std::vector<std::string> draining();

 private:
  struct Job {
    int64_t id;
    nlohmann::json target;
    std::vector<int32_t> slots;
  };
  void run();

  KvTransferAgent& agent_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<Job> jobs_;
  std::vector<KvSendResult> done_;
  std::vector<std::string> draining_;
  std::thread thread_;
};

// The leader's view of its group's sends: each rank answers a poll with the sends it finished
// ({"done": [{"id", "bytes"} or {"id", "error"[, "cancelled"]}]}); a send is finished once every
// rank of the group has finished it (bytes summed, errors joined with the rank that had them;
// cancelled only if no rank had started it).
class KvGroupSends {
 public:
  std::vector<KvSendResult> add_answers(const std::vector<std::string>& answers);

 private:
  struct Pending {
    size_t ranks = 0;
    int64_t bytes = 0;
    std::string errors;
    bool cancelled = true;  // every rank so far dropped it before it started
  };
  std::map<int64_t, Pending> pending_;
};

nlohmann::json to_json_list(const std::vector<KvSendResult>& results);

}  // namespace epserve
