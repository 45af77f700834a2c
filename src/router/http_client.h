// The router's HTTP client: one request to one worker, its body read whole or handed over chunk
// by chunk as it arrives (a streamed SSE response passes through without waiting for the end).
// A thin layer over cpp-httplib's client; the only router file that includes httplib.h is
// http_client.cpp. Only plain http:// worker URLs are supported.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace epserve {

// "http://host:port" (a path after it is refused). Throws epserve::Error naming the URL.
struct WorkerAddress {
  std::string host;  // without [] for an IPv6 address
  int port = 80;
};
WorkerAddress parse_worker_url(const std::string& url);

// Lets another thread abort an exchange in flight: cancel() closes its connection at once (a
// worker waiting to answer sees the client gone).
class CancelHandle {
 public:
  void cancel();
  bool cancelled();
  // http_send's side: `stop` closes the connection; false when already cancelled.
  bool attach(std::function<void()> stop);
  void detach();

 private:
  std::mutex mutex_;
  bool cancelled_ = false;
  std::function<void()> stop_;
};

struct ClientRequest {
  std::string method = "GET";
  std::string path;  // "/generate"
  std::string body;  // sent as application/json when non-empty
  std::vector<std::pair<std::string, std::string>> headers;
  int connect_timeout_ms = 10000;
  // How long the whole exchange may take (each read waits at most this long, and the body
  // reader gives up once it is past).
  int timeout_s = 1800;
  std::shared_ptr<CancelHandle> cancel;  // optional
};

struct ClientResponse {
  int status = 0;     // 0: no HTTP answer (see error)
  std::string error;  // non-empty when the exchange failed (connect, read, timeout)
  std::string content_type;
  std::string body;  // the whole body, unless on_body took it
};

// Sends `request` to `base_url`. on_headers(status, content_type) runs once the status line and
// headers are in; then on_body(chunk) runs per chunk read (return false to stop reading: the
// connection is closed). Without on_body the body is collected into ClientResponse::body.
ClientResponse http_send(const std::string& base_url, const ClientRequest& request,
                         const std::function<void(int, const std::string&)>& on_headers = {},
                         const std::function<bool(std::string_view)>& on_body = {});

}  // namespace epserve
