// One request to a worker, run on its own thread so that the router's handler can wait for the
// status and headers, then either read the whole body or pass the body on chunk by chunk as it
// arrives (SSE pass-through). Cancelling (the client went away) closes the worker connection.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "router/http_client.h"

namespace epserve {

// Wakes one waiter on any change of several upstreams (the PD router waits for whichever of
// its prefill and decode calls moves first).
class UpstreamSignal {
 public:
  void notify();
  // Waits until `ready()` holds; it is checked after every notify.
  void wait(const std::function<bool()>& ready);

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
};

class Upstream {
 public:
  // Starts sending `request` to `base_url` on a new thread; `signal` (optional) is notified on
  // every change too.
  static std::shared_ptr<Upstream> start(std::string base_url, ClientRequest request,
                                         std::shared_ptr<UpstreamSignal> signal = nullptr);
  bool has_status();
  bool done();

  // Waits until the status line is in, or the exchange failed: the status (0 on failure).
  int wait_status();
  const std::string& content_type();
  // Waits until the exchange is over: the whole body (what was not taken by next_chunk).
  std::string wait_body();
  // The next chunk of the body; nullopt at the end (then error() says whether it ended badly).
  std::optional<std::string> next_chunk();
  // Non-empty when the exchange failed (connect, timeout, connection lost mid-body).
  std::string error();
  void cancel();

 private:
  void run(const std::string& base_url, const ClientRequest& request);
  void changed();

  std::shared_ptr<UpstreamSignal> signal_;
  std::shared_ptr<CancelHandle> cancel_ = std::make_shared<CancelHandle>();

  std::mutex mutex_;
  std::condition_variable changed_;
  bool have_status_ = false;
  bool done_ = false;
  bool cancelled_ = false;
  int status_ = 0;
  std::string content_type_;
  std::deque<std::string> chunks_;
  std::string error_;
};

}  // namespace epserve
