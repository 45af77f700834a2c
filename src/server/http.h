// The HTTP server under the API routes: a thin layer over cpp-httplib (the only file that
// includes httplib.h is http.cpp). Connections wait in the ConnectionGate (http_connections.h)
// until their request headers are in; then the request runs on a pool of threads. Handlers must
// only parse, post work and wait; a handler may answer at once (status + body) or hand back a
// stream function that writes chunks (Server-Sent Events) until it returns. Every exception a
// handler throws becomes an OpenAI-shaped error response (ApiError keeps its status; others are
// 500).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace epserve {

struct HttpRequest {
  std::string method;
  std::string path;
  std::string body;
  std::vector<std::string> path_params;  // the regex groups of the route pattern
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> query;

  // Case-insensitive header lookup; "" when absent.
  std::string header(std::string_view name) const;
  std::string query_param(std::string_view name) const;
};

// Writes chunks of a streaming response. write() returns false once the client has gone away;
// the stream function should then stop (and cancel its work).
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  virtual bool write(std::string_view data) = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the response is sent chunked: stream(writer) runs after the handler returns.
  std::function<void(StreamWriter&)> stream;

  void json(int status_code, std::string text) {
    status = status_code;
    content_type = "application/json";
    body = std::move(text);
  }
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;
// Runs before routing; returns true when it answered the request itself (e.g. 401).
using HttpFilter = std::function<bool(const HttpRequest&, HttpResponse&)>;
// Told about every request a handler failed (the status and message of its error response).
using HttpErrorObserver =
    std::function<void(const HttpRequest&, int status, const std::string& message)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;  // 0: any free port (see HttpServer::port())
  size_t max_body_bytes = 8 << 20;
  size_t threads = 256;  // requests handled at once; each open streaming response holds one
  // Connections open at once (handled, idle or sending headers); more are answered 503.
  size_t max_connections = 4096;
  int header_timeout_s = 10;  // a request's headers must arrive within this (else 408)
  // The whole request must be read within this once its headers are in (a trickling body then
  // fails, 400, and frees its handler thread).
  int request_read_timeout_s = 30;
  int keep_alive_timeout_s = 5;
  bool access_log = false;  // one stderr line per request ("HTTP POST /generate -> 200")
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `pattern` is a regex matched against the whole path; its groups become path_params.
  void route(const std::string& method, const std::string& pattern, HttpHandler handler);
  void set_filter(HttpFilter filter);
  // Set before serve().
  void set_error_observer(HttpErrorObserver observer);

  // Binds the socket; throws epserve::Error naming host:port when it cannot.
  void bind();
  int port() const;
  // Serves until stop(); call bind() first.
  void serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A blocking HTTP/1.1 client call (PD disaggregation: a decode server asking the prefill
// server's bootstrap service). status 0 when no answer came; `error` then says why.
struct HttpClientResult {
  int status = 0;
  std::string body;
  std::string error;
  // With status 0: false when no connection was made (the request cannot have arrived).
  bool maybe_delivered = true;
};
HttpClientResult http_call(const std::string& method, const std::string& host, int port,
                           const std::string& path, const std::string& body, double timeout_s);

}  // namespace epserve
