#include <algorithm>

#include "server/frontend.h"
#include "server/metrics.h"

namespace epserve {

namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

RequestGroup::RequestGroup(Frontend& frontend, std::vector<std::string> rids, int dp_rank)
    : frontend_(frontend),
      rids_(std::move(rids)),
      dp_rank_(dp_rank),
      created_(Clock::now()),
      finished_(rids_.size(), false),
      got_first_(rids_.size(), false),
      last_output_(rids_.size(), created_) {}

RequestGroup::~RequestGroup() {
  for (size_t i = 0; i < rids_.size(); ++i) {
    if (!finished_[i]) frontend_.unregister(rids_[i], dp_rank_, true);
  }
}

bool RequestGroup::next(OutputEvent& event, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return false;
  event = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void RequestGroup::abort(size_t index) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_[index]) return;
    finished_[index] = true;
    std::erase_if(queue_, [index](const OutputEvent& e) { return e.index == index; });
  }
  frontend_.unregister(rids_[index], dp_rank_, true);
}

bool RequestGroup::finished(size_t index) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_[index];
}

bool RequestGroup::all_finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::all_of(finished_.begin(), finished_.end(), [](bool f) { return f; });
}

void RequestGroup::push(size_t index, TokenOutput output, Clock::time_point received) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_[index]) return;  // aborted here; late outputs are dropped
    if (output.finished) finished_[index] = true;
    if (frontend_.metrics_ != nullptr) {
      auto n = static_cast<int64_t>(output.token_ids.size());
      if (!got_first_[index] && n > 0) {
        frontend_.metrics_->first_token(seconds(received - created_));
        frontend_.metrics_->next_tokens(n, -1);
      } else {
        frontend_.metrics_->next_tokens(n, seconds(received - last_output_[index]));
      }
    }
    if (!output.token_ids.empty()) {
      got_first_[index] = true;
      last_output_[index] = received;
    }
    const int status = output.error_status;
    queue_.push_back(OutputEvent{index, std::move(output), received, status});
  }
  cv_.notify_all();
}

void RequestGroup::fail_all(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < rids_.size(); ++i) {
      if (finished_[i]) continue;
      finished_[i] = true;
      TokenOutput out;
      out.rid = rids_[i];
      out.finished = true;
      out.finish_reason = "abort";
      out.error = reason;
      queue_.push_back(OutputEvent{i, std::move(out), Clock::now(), 503});
    }
  }
  cv_.notify_all();
}

}  // namespace epserve
