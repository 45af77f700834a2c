#include "server/http.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <regex>

#include "core/error.h"
#include "core/log.h"
#include "server/errors.h"

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
  httplib::Server server;
  std::vector<Route> routes;
  HttpFilter filter;
  int port = 0;

  void dispatch(const httplib::Request& raw, httplib::Response& out);
  void run(const HttpHandler& handler, const HttpRequest& request, HttpResponse& response);
};

void HttpServer::Impl::run(const HttpHandler& handler, const HttpRequest& request,
                           HttpResponse& response) {
  try {
    handler(request, response);
  } catch (const ApiError& e) {
    response = HttpResponse{};
    response.json(e.status(), error_body(e.status(), e.what(), e.param(), e.code()));
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", request.method, request.path, e.what());
    response = HttpResponse{};
    response.json(500, error_body(500, std::string("internal error: ") + e.what()));
  }
}

void HttpServer::Impl::dispatch(const httplib::Request& raw, httplib::Response& out) {
  HttpRequest request;
  request.method = raw.method;
  request.path = raw.path;
  request.body = raw.body;
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
    for (const Route& route : routes) {
      if (!std::regex_match(request.path, groups, route.pattern)) continue;
      path_known = true;
      if (route.method == request.method) {
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
  httplib::Server& s = impl->server;
  size_t threads = impl->options.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(impl->options.max_body_bytes);
  s.set_keep_alive_timeout(impl->options.keep_alive_timeout_s);
  s.set_tcp_nodelay(true);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second server
  // bind the same port silently instead of failing.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  auto any = [impl](const httplib::Request& req, httplib::Response& res) {
    impl->dispatch(req, res);
  };
  s.Get(".*", any);
  s.Post(".*", any);
  s.Put(".*", any);
  s.Delete(".*", any);
  s.Patch(".*", any);
  s.Options(".*", any);
  // Errors httplib produces itself (413 body too large, 400 malformed HTTP) get a JSON body.
  s.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message = res.status == 413 ? "request body too large" : "bad HTTP request";
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
}

int HttpServer::port() const {
  return impl_->port;
}

void HttpServer::serve() {
  impl_->server.listen_after_bind();
}

void HttpServer::stop() {
  if (impl_->server.is_running()) impl_->server.stop();
}

}  // namespace epserve
