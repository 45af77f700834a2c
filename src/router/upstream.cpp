#include "router/upstream.h"

#include <thread>

namespace epserve {

void UpstreamSignal::notify() {
  std::lock_guard<std::mutex> lock(mutex_);
  changed_.notify_all();
}

void UpstreamSignal::wait(const std::function<bool()>& ready) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, ready);
}

std::shared_ptr<Upstream> Upstream::start(std::string base_url, ClientRequest request,
                                          std::shared_ptr<UpstreamSignal> signal) {
  auto upstream = std::make_shared<Upstream>();
  upstream->signal_ = std::move(signal);
  request.cancel = upstream->cancel_;
  std::thread([upstream, base_url = std::move(base_url), request = std::move(request)] {
    upstream->run(base_url, request);
  }).detach();
  return upstream;
}

void Upstream::run(const std::string& base_url, const ClientRequest& request) {
  ClientResponse response = http_send(
      base_url, request,
      [this](int status, const std::string& content_type) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          status_ = status;
          content_type_ = content_type;
          have_status_ = true;
        }
        changed();
      },
      [this](std::string_view chunk) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (cancelled_) return false;
          chunks_.emplace_back(chunk);
        }
        changed();
        return true;
      });
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!response.error.empty() && !cancelled_) error_ = response.error;
    if (!have_status_) status_ = 0;
    have_status_ = true;
    done_ = true;
  }
  changed();
}

// Called without mutex_ held: a waiter on the signal checks has_status()/done() under the
// signal's lock.
void Upstream::changed() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    changed_.notify_all();
  }
  if (signal_) signal_->notify();
}

bool Upstream::has_status() {
  std::lock_guard<std::mutex> lock(mutex_);
  return have_status_;
}

bool Upstream::done() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

int Upstream::wait_status() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return have_status_; });
  return status_;
}

const std::string& Upstream::content_type() {
  std::lock_guard<std::mutex> lock(mutex_);
  return content_type_;
}

std::string Upstream::wait_body() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return done_; });
  std::string body;
  for (auto& c : chunks_) body += c;
  chunks_.clear();
  return body;
}

std::optional<std::string> Upstream::next_chunk() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return done_ || !chunks_.empty(); });
  if (chunks_.empty()) return std::nullopt;
  std::string chunk = std::move(chunks_.front());
  chunks_.pop_front();
  return chunk;
}

std::string Upstream::error() {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void Upstream::cancel() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  cancel_->cancel();
}

}  // namespace epserve
