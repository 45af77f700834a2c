#include "router/http_client.h"

#include <httplib.h>

#include <chrono>

#include "core/error.h"

namespace epserve {

WorkerAddress parse_worker_url(const std::string& url) {
  const std::string scheme = "http://";
  EPS_CHECK(url.rfind(scheme, 0) == 0,
            "worker URL {}: only http://host:port URLs are supported (https is not)", url);
  std::string rest = url.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  EPS_CHECK(rest.find('/') == std::string::npos,
            "worker URL {}: a path after host:port is not "
            "supported",
            url);
  WorkerAddress address;
  std::string port;
  if (!rest.empty() && rest.front() == '[') {
    size_t end = rest.find(']');
    EPS_CHECK(end != std::string::npos, "worker URL {}: unterminated [IPv6 address]", url);
    address.host = rest.substr(1, end - 1);
    if (end + 1 < rest.size()) {
      EPS_CHECK(rest[end + 1] == ':', "worker URL {}: expected :port after ]", url);
      port = rest.substr(end + 2);
    }
  } else {
    size_t colon = rest.find(':');
    address.host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
  }
  EPS_CHECK(!address.host.empty(), "worker URL {}: no host", url);
  if (!port.empty()) {
    size_t used = 0;
    int value = -1;
    try {
      value = std::stoi(port, &used);
    } catch (const std::exception&) {
    }
    EPS_CHECK(used == port.size() && value > 0 && value < 65536, "worker URL {}: bad port '{}'",
              url, port);
    address.port = value;
  }
  return address;
}

void CancelHandle::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
  if (stop_) stop_();
}

bool CancelHandle::cancelled() {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

bool CancelHandle::attach(std::function<void()> stop) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (cancelled_) return false;
  stop_ = std::move(stop);
  return true;
}

void CancelHandle::detach() {
  std::lock_guard<std::mutex> lock(mutex_);
  stop_ = nullptr;
}

ClientResponse http_send(const std::string& base_url, const ClientRequest& request,
                         const std::function<void(int, const std::string&)>& on_headers,
                         const std::function<bool(std::string_view)>& on_body) {
  ClientResponse out;
  WorkerAddress address;
  try {
    address = parse_worker_url(base_url);
  } catch (const std::exception& e) {
    out.error = e.what();
    return out;
  }
  httplib::Client client(address.host, address.port);
  client.set_connection_timeout(std::chrono::milliseconds(request.connect_timeout_ms));
  client.set_read_timeout(std::chrono::seconds(request.timeout_s));
  client.set_write_timeout(std::chrono::seconds(request.timeout_s));
  client.set_keep_alive(false);
  client.set_tcp_nodelay(true);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(request.timeout_s);
  bool timed_out = false;
  bool stopped = false;
  httplib::Request req;
  req.method = request.method;
  req.path = request.path;
  for (const auto& [k, v] : request.headers) req.set_header(k, v);
  if (!request.body.empty() || request.method == "POST") {
    req.body = request.body;
    req.set_header("Content-Type", "application/json");
  }
  req.response_handler = [&](const httplib::Response& res) {
    out.status = res.status;
    out.content_type = res.get_header_value("Content-Type");
    if (on_headers) on_headers(out.status, out.content_type);
    return true;
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      return false;
    }
    if (on_body) {
      stopped = !on_body(std::string_view(data, size));
      return !stopped;
    }
    out.body.append(data, size);
    return true;
  };
  if (request.cancel && !request.cancel->attach([&client] { client.stop(); })) {
    out.error = "cancelled";
    return out;
  }
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  bool ok = client.send(req, res, error);
  if (request.cancel) {
    request.cancel->detach();
    stopped = stopped || request.cancel->cancelled();
  }
  if (timed_out) {
    out.error = "timed out after " + std::to_string(request.timeout_s) + " s";
  } else if (!ok && !stopped) {
    out.error = httplib::to_string(error);
    if (error == httplib::Error::Read && out.status != 0)
      out.error = "connection lost mid-response";
  }
  return out;
}

}  // namespace epserve
