#include "server/http.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <regex>

#include "core/error.h"
#include "core/log.h"
#include "server/errors.h"
#include "server/http_connections.h"

namespace epserve {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

class SinkWriter : public StreamWriter {
 public:
  explicit SinkWriter(httplib::DataSink& sink) : sink_(sink) {}
  bool write(std::string_view data) override {
    if (!alive_) return false;
    if (data.empty()) return true;
    alive_ = sink_.write(data.data(), data.size());
    return alive_;
  }

 private:
  httplib::DataSink& sink_;
  bool alive_ = true;
};

struct Route {
  std::string method;
  std::regex pattern;
  HttpHandler handler;
};

// Read/write timeout of a request being handled (after its headers): each read and each write
// may wait this long.
constexpr int kSocketTimeoutMs = 5000;

// One request's bytes as httplib reads them: first those the connection gate already read, then
// the socket. At most `budget` bytes are read for the request (headers, body and its framing,
// compressed or not); past that, reads fail and over_budget() says why.
class ConnectionStream : public httplib::Stream {
 public:
  // The request must be read by read_deadline: a body that trickles in holds a handler thread
  // for a bounded time only.
  ConnectionStream(int fd, std::string buffered, size_t budget,
                   std::chrono::steady_clock::time_point read_deadline)
      : fd_(fd), buffer_(std::move(buffered)), budget_(budget), read_deadline_(read_deadline) {}

  bool is_readable() const override {
    return pos_ < buffer_.size() || wait(POLLIN, read_wait_ms());
  }
  bool is_writable() const override { return wait(POLLOUT, kSocketTimeoutMs); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == buffer_.size()) {
      if (failed_) return -1;
      buffer_.resize(16384);
      pos_ = 0;
      ssize_t n = -1;
      if (wait(POLLIN, read_wait_ms())) {
        do {
          n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
        } while (n < 0 && errno == EINTR);
      }
      buffer_.resize(n > 0 ? static_cast<size_t>(n) : 0);
      if (n <= 0) {
        failed_ = failed_ || n < 0;
        return n < 0 ? -1 : 0;
      }
    }
    size_t k = std::min(size, buffer_.size() - pos_);
    if (used_ + k > budget_) {
      over_budget_ = failed_ = true;
      return -1;
    }
    std::memcpy(ptr, buffer_.data() + pos_, k);
    pos_ += k;
    used_ += k;
    return static_cast<ssize_t>(k);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address(::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

  // A read failed or ran past the budget: the rest of the request was not read, so the
  // connection cannot carry another one.
  bool failed() const { return failed_; }
  // The request's body was left unread (refused): the connection is closed after the answer.
  void abandon() { failed_ = true; }
  bool over_budget() const { return over_budget_; }
  // Bytes read past the request (the start of a pipelined one).
  std::string leftover() const { return buffer_.substr(pos_); }

 private:
  // How long the next read may wait: the socket timeout, cut short by the request's deadline.
  int read_wait_ms() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    read_deadline_ - std::chrono::steady_clock::now())
                    .count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, kSocketTimeoutMs));
  }
  bool wait(short events, int timeout_ms) const {
    pollfd p{fd_, events, 0};
    int r;
    do {
      r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r > 0 && (p.revents & (events | POLLHUP)) != 0;
  }
  template <class F>
  void address(F get, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    ip.clear();
    port = 0;
    if (get(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
    char text[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
      port = ntohs(a->sin6_port);
    }
    ip = text;
  }

  int fd_;
  std::string buffer_;
  size_t pos_ = 0;
  size_t budget_;
  size_t used_ = 0;
  bool failed_ = false;
  bool over_budget_ = false;
  std::chrono::steady_clock::time_point read_deadline_;
};

// The stream of the request this thread is handling, for httplib's error handler.
thread_local ConnectionStream* current_stream = nullptr;

// httplib's accept loop hands every new socket to process_and_close_socket on its task queue;
// here that only passes it to the connection gate, so the queue runs tasks inline.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

class GatedServer : public httplib::Server {
 public:
  using httplib::Server::process_request;
  ConnectionGate* gate = nullptr;

  // httplib listens with a backlog of 5, too few for a burst of clients; listen() again on the
  // bound socket sets a new one.
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }

 private:
  bool process_and_close_socket(socket_t sock) override {
    gate->accept(sock);
    return true;
  }
};

std::string body_too_large(size_t max_body_bytes) {
  return "request body too large (the limit is " + std::to_string(max_body_bytes) + " bytes)";
}

bool is_chunked(const httplib::Request& req) {
  return iequals(req.get_header_value("Transfer-Encoding"), "chunked");
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return "";
}

std::string HttpRequest::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return "";
}

struct HttpServer::Impl {
  HttpServerOptions options;
  GatedServer server;
  std::unique_ptr<ConnectionGate> gate;
  std::unique_ptr<httplib::ThreadPool> workers;
  std::vector<Route> routes;
  HttpFilter filter;
  HttpErrorObserver error_observer;
  int port = 0;

  void serve_request(int fd, std::string buffered);
  bool read_body(const httplib::Request& raw, const httplib::ContentReader& reader,
                 httplib::Response& out, std::string& body);
  void dispatch(const httplib::Request& raw, std::string body, httplib::Response& out);
  void run(const HttpHandler& handler, const HttpRequest& request, HttpResponse& response);
};

// One request of a connection whose headers have arrived, on a worker thread; the connection
// then goes back to the gate (kept alive, or closed when its request was not read whole).
void HttpServer::Impl::serve_request(int fd, std::string buffered) {
  size_t budget = options.max_body_bytes + options.max_body_bytes / 8 + (64 << 10);
  ConnectionStream stream(
      fd, std::move(buffered), budget,
      std::chrono::steady_clock::now() + std::chrono::seconds(options.request_read_timeout_s));
  bool connection_closed = false;
  current_stream = &stream;
  bool ok = server.process_request(stream, false, connection_closed, nullptr);
  current_stream = nullptr;
  if (!ok || connection_closed || stream.failed()) {
    gate->close(fd);
  } else {
    gate->keep_alive(fd, stream.leftover());
  }
}

// Reads the body of a request into `body`, at most max_body_bytes after any Content-Encoding is
// undone. False when it answered the request itself (413, 400).
bool HttpServer::Impl::read_body(const httplib::Request& raw, const httplib::ContentReader& reader,
                                 httplib::Response& out, std::string& body) {
  auto fail = [&](int status, const std::string& message) {
    if (current_stream != nullptr) current_stream->abandon();
    out.status = status;
    out.set_header("Connection", "close");
    out.set_content(error_body(status, message), "application/json");
    return false;
  };
  bool has_length = raw.has_header("Content-Length");
  if (raw.has_header("Transfer-Encoding") && !is_chunked(raw)) {
    return fail(400, "Transfer-Encoding " + raw.get_header_value("Transfer-Encoding") +
                         " is not supported (only chunked)");
  }
  // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 6.3), as
  // `curl -X POST URL` sends it.
  if (!has_length && !is_chunked(raw)) return true;
  bool too_large = false;
  bool read = reader([&](const char* data, size_t size) {
    if (body.size() + size > options.max_body_bytes) {
      too_large = true;
      return false;
    }
    body.append(data, size);
    return true;
  });
  if (read) return true;
  too_large = too_large || out.status == 413 || (current_stream && current_stream->over_budget());
  if (too_large) {
    return fail(413, body_too_large(options.max_body_bytes));
  }
  return fail(out.status >= 400 ? out.status : 400, "the request body could not be read");
}

void HttpServer::Impl::run(const HttpHandler& handler, const HttpRequest& request,
                           HttpResponse& response) {
  try {
    handler(request, response);
  } catch (const ApiError& e) {
    response = HttpResponse{};
    response.json(e.status(), error_body(e.status(), e.what(), e.param(), e.code()));
    if (error_observer) error_observer(request, e.status(), e.what());
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", request.method, request.path, e.what());
    response = HttpResponse{};
    response.json(500, error_body(500, std::string("internal error: ") + e.what()));
    if (error_observer) error_observer(request, 500, e.what());
  }
}

void HttpServer::Impl::dispatch(const httplib::Request& raw, std::string body,
                                httplib::Response& out) {
  HttpRequest request;
  request.method = raw.method;
  request.path = raw.path;
  request.body = std::move(body);
  for (const auto& [k, v] : raw.headers) request.headers.emplace_back(k, v);
  for (const auto& [k, v] : raw.params) request.query.emplace_back(k, v);

  HttpResponse response;
  bool handled = false;
  if (filter) {
    // A filter that throws (e.g. 401) has answered the request.
    run(
        [&](const HttpRequest& r, HttpResponse& w) {
          handled = true;
          handled = filter(r, w);
        },
        request, response);
  }
  if (!handled) {
    bool path_known = false;
    const Route* match = nullptr;
    std::smatch groups;
    // HEAD is answered as GET; httplib sends the headers only.
    const std::string& method = request.method == "HEAD" ? std::string("GET") : request.method;
    for (const Route& route : routes) {
      if (!std::regex_match(request.path, groups, route.pattern)) continue;
      path_known = true;
      if (route.method == method) {
        match = &route;
        break;
      }
    }
    if (match != nullptr) {
      for (size_t i = 1; i < groups.size(); ++i) request.path_params.push_back(groups[i].str());
      run(match->handler, request, response);
    } else if (path_known) {
      response.json(
          405, error_body(405, "method " + request.method + " is not allowed on " + request.path));
    } else {
      response.json(404, error_body(404, "no route " + request.method + " " + request.path));
    }
  }

  out.status = response.status;
  for (const auto& [k, v] : response.headers) out.set_header(k, v);
  if (response.stream) {
    auto stream = std::move(response.stream);
    out.set_header("Cache-Control", "no-cache");
    out.set_chunked_content_provider(response.content_type,
                                     [stream](size_t, httplib::DataSink& sink) {
                                       SinkWriter writer(sink);
                                       try {
                                         stream(writer);
                                       } catch (const std::exception& e) {
                                         spdlog::error("stream: {}", e.what());
                                       }
                                       sink.done();
                                       return true;
                                     });
  } else {
    out.set_content(response.body, response.content_type);
  }
}

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  Impl* impl = impl_.get();
  GatedServer& s = impl->server;
  // Connections wait in the gate until their headers are in; then one worker thread serves the
  // request (and its stream). httplib's accept loop runs; its keep-alive loop does not.
  ConnectionLimits limits;
  limits.max_connections = impl->options.max_connections;
  limits.header_timeout = std::chrono::seconds(impl->options.header_timeout_s);
  limits.keep_alive_timeout = std::chrono::seconds(impl->options.keep_alive_timeout_s);
  impl->gate = std::make_unique<ConnectionGate>(limits, [impl](int fd, std::string buffered) {
    impl->workers->enqueue([impl, fd, buffered = std::move(buffered)]() mutable {
      impl->serve_request(fd, std::move(buffered));
    });
  });
  s.gate = impl->gate.get();
  s.new_task_queue = [] { return new InlineTaskQueue(); };
  s.set_payload_max_length(impl->options.max_body_bytes);
  s.set_read_timeout(kSocketTimeoutMs / 1000);
  s.set_write_timeout(kSocketTimeoutMs / 1000);
  s.set_tcp_nodelay(true);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second server
  // bind the same port silently instead of failing.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  auto any = [impl](const httplib::Request& req, httplib::Response& res) {
    // httplib reads no body for GET, HEAD and OPTIONS: one that came anyway is still on the
    // socket, and must not be read as the next request. Answer, then close the connection.
    if ((req.has_header("Content-Length") &&
         req.get_header_value<uint64_t>("Content-Length") > 0) ||
        req.has_header("Transfer-Encoding")) {
      if (current_stream != nullptr) current_stream->abandon();
      res.set_header("Connection", "close");
    }
    impl->dispatch(req, "", res);
  };
  auto with_body = [impl](const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader) {
    std::string body;
    if (impl->read_body(req, reader, res, body)) impl->dispatch(req, std::move(body), res);
  };
  s.Get(".*", any);
  s.Post(".*", with_body);
  s.Put(".*", with_body);
  s.Delete(".*", with_body);
  s.Patch(".*", with_body);
  s.Options(".*", any);
  // `Expect: 100-continue` with a Content-Length over the limit: 413 before the body is sent.
  size_t max_body = impl->options.max_body_bytes;
  s.set_expect_100_continue_handler(
      [max_body](const httplib::Request& req, httplib::Response& res) {
        if (req.get_header_value<uint64_t>("Content-Length") <= max_body) return 100;
        if (current_stream != nullptr) current_stream->abandon();
        res.status = 413;
        res.set_header("Connection", "close");
        res.set_content(error_body(413, body_too_large(max_body)), "application/json");
        return 413;
      });
  // Errors httplib produces itself (413 body too large, 400 malformed HTTP) get a JSON body.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [max_body](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (current_stream != nullptr && current_stream->over_budget()) res.status = 413;
        if (current_stream != nullptr && current_stream->failed()) {
          res.set_header("Connection", "close");
        }
        std::string message = res.status == 413 ? body_too_large(max_body) : "bad HTTP request";
        res.set_content(error_body(res.status, message), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  if (impl->options.access_log) {
    s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "HTTP %s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
    });
  }
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::route(const std::string& method, const std::string& pattern, HttpHandler handler) {
  impl_->routes.push_back(Route{method, std::regex(pattern), std::move(handler)});
}

void HttpServer::set_filter(HttpFilter filter) {
  impl_->filter = std::move(filter);
}

void HttpServer::set_error_observer(HttpErrorObserver observer) {
  impl_->error_observer = std::move(observer);
}

void HttpServer::bind() {
  const auto& o = impl_->options;
  if (o.port == 0) {
    impl_->port = impl_->server.bind_to_any_port(o.host);
    EPS_CHECK(impl_->port > 0, "cannot listen on {} (any port)", o.host);
  } else {
    EPS_CHECK(impl_->server.bind_to_port(o.host, o.port),
              "cannot listen on {}:{}: the port is in use or the address is not local (--host, "
              "--port)",
              o.host, o.port);
    impl_->port = o.port;
  }
  impl_->server.widen_backlog();
}

int HttpServer::port() const {
  return impl_->port;
}

void HttpServer::serve() {
  impl_->workers = std::make_unique<httplib::ThreadPool>(impl_->options.threads);
  impl_->gate->start();
  impl_->server.listen_after_bind();
  impl_->gate->stop();
  impl_->workers->shutdown();
}

void HttpServer::stop() {
  if (impl_->server.is_running()) impl_->server.stop();
}

HttpClientResult http_call(const std::string& method, const std::string& host, int port,
                           const std::string& path, const std::string& body, double timeout_s) {
  httplib::Client client(host, port);
  const auto whole = std::chrono::duration<double>(timeout_s);
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(whole).count();
  client.set_connection_timeout(std::min<int64_t>(usec, 10000000) / 1000000,
                                std::min<int64_t>(usec, 10000000) % 1000000);
  client.set_read_timeout(usec / 1000000, usec % 1000000);
  client.set_write_timeout(10, 0);
  httplib::Result res =
      method == "GET" ? client.Get(path) : client.Post(path, body, "application/json");
  HttpClientResult out;
  if (!res) {
    out.error = httplib::to_string(res.error());
    out.maybe_delivered = res.error() != httplib::Error::Connection;
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  return out;
}

}  // namespace epserve
