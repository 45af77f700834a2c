#include "runtime/kv_send_queue.h"

#include <algorithm>

#include <fmt/format.h>

namespace epserve {

KvSendQueue::KvSendQueue(KvTransferAgent& agent) : agent_(agent) {
  thread_ = std::thread([this] { run(); });
}

KvSendQueue::~KvSendQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void KvSendQueue::start(int64_t id, nlohmann::json target, std::vector<int32_t> slots) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({id, std::move(target), std::move(slots)});
  }
  cv_.notify_all();
}

void KvSendQueue::cancel(int64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(jobs_.begin(), jobs_.end(), [&](const Job& j) { return j.id == id; });
  if (it == jobs_.end()) return;
  jobs_.erase(it);
  done_.push_back({id, 0, "cancelled before it started", /*cancelled=*/true});
}

std::vector<KvSendResult> KvSendQueue::take_done() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(done_, {});
}

std::vector<std::string> KvSendQueue::draining() {
  std::lock_guard<std::mutex> lock(mutex_);
  return draining_;
}

void KvSendQueue::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    if (jobs_.empty()) {
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || !jobs_.empty(); });
      if (stop_) break;
      if (jobs_.empty()) {
        lock.unlock();
        std::vector<std::string> now = agent_.draining();
        lock.lock();
        draining_ = std::move(now);
        continue;
      }
    }
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    KvSendResult result{job.id, 0, ""};
    try {
      result.bytes = agent_.send(job.target, job.slots);
    } catch (const std::exception& e) {
      result.error = e.what();
    }
    std::vector<std::string> now = agent_.draining();
    lock.lock();
    draining_ = std::move(now);  // before the result: a poll that sees it sees its drain
    done_.push_back(std::move(result));
  }
}

std::vector<KvSendResult> KvGroupSends::add_answers(const std::vector<std::string>& answers) {
  std::vector<KvSendResult> finished;
  for (size_t rank = 0; rank < answers.size(); ++rank) {
    nlohmann::json a = nlohmann::json::parse(answers[rank], nullptr, false);
    if (!a.is_object() || !a.contains("done") || !a["done"].is_array()) continue;
    for (const auto& d : a["done"]) {
      const int64_t id = d.value("id", int64_t{-1});
      Pending& p = pending_[id];
      p.ranks += 1;
      p.bytes += d.value("bytes", int64_t{0});
      p.cancelled = p.cancelled && d.value("cancelled", false);
      if (d.contains("error")) {
        p.errors += fmt::format("{}rank {} of the group: {}", p.errors.empty() ? "" : "; ", rank,
                                d["error"].get<std::string>());
      }
      if (p.ranks == answers.size()) {
        finished.push_back({id, p.bytes, p.errors, p.cancelled});
        pending_.erase(id);
      }
    }
  }
  return finished;
}

nlohmann::json to_json_list(const std::vector<KvSendResult>& results) {
  nlohmann::json list = nlohmann::json::array();
  for (const KvSendResult& r : results) {
    nlohmann::json d = {{"id", r.id}};
    if (r.error.empty()) {
      d["bytes"] = r.bytes;
    } else {
      d["error"] = r.error;
      if (r.cancelled) d["cancelled"] = true;
    }
    list.push_back(std::move(d));
  }
  return list;
}

}  // namespace epserve
