#include "comm/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/store_secret.h"
#include "comm/store_wire.h"
#include "core/error.h"
#include "core/log.h"

namespace epserve {

using Clock = std::chrono::steady_clock;
using namespace store_wire;

HostPort HostPort::parse(const std::string& text, const std::string& what) {
  HostPort hp;
  size_t colon = text.rfind(':');
  EPS_CHECK(colon != std::string::npos && colon + 1 < text.size(),
            "{} must be HOST:PORT, found '{}'", what, text);
  hp.host = text.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  std::string port = text.substr(colon + 1);
  char* end = nullptr;
  long value = std::strtol(port.c_str(), &end, 10);
  EPS_CHECK(end && *end == '\0' && value >= 0 && value <= 65535 && !hp.host.empty(),
            "{} must be HOST:PORT with a port in 0..65535, found '{}'", what, text);
  hp.port = static_cast<int>(value);
  return hp;
}

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

namespace {

addrinfo* resolve(const HostPort& hp, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &result);
  EPS_CHECK(rc == 0, "cannot resolve rendezvous store address {}: {}", hp.str(), gai_strerror(rc));
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Server: one thread, poll() over the listening socket and the clients.

namespace {

// Rejected connections are logged one line each up to this many, then only counted.
constexpr int64_t kMaxRejectLines = 20;

std::string peer_name(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "an unknown peer";
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "an unknown peer";
  }
  return HostPort{host, std::atoi(port)}.str();
}

}  // namespace

struct StoreServer::Impl {
  struct Conn {
    int fd;
    std::string peer;
    Clock::time_point accepted;
    bool authenticated = false;
    std::string inbuf;
    std::string label;  // non-empty when registered for liveness
  };
  struct Waiter {
    int fd;
    Clock::time_point deadline;  // max() = forever
  };
  struct Beat {
    std::string label;
    Clock::time_point last;
  };

  HostPort bound;
  std::string secret;
  StoreServerOptions options;
  int listen_fd = -1;
  int wake_pipe[2] = {-1, -1};
  std::thread thread;
  std::map<int, Conn> conns;
  std::map<std::string, std::string> data;
  std::map<std::string, std::vector<Waiter>> waiters;
  mutable std::mutex beats_mutex;  // beats and rejected are read by other threads
  std::map<int, Beat> beats;       // by fd
  std::atomic<int64_t> rejected{0};

  void run();
  void accept_one();
  void read_from(int fd);
  // Drops a connection that did not present the secret, with one log line saying why.
  void reject(int fd, const std::string& why);
  void handle_request(Conn& conn, const Request& req);
  void set_key(const std::string& key, std::string value);
  void drop(int fd);
  void expire_waiters();
  void expire_hellos();
  int poll_timeout_ms() const;
};

StoreServer::StoreServer(const std::string& host, int port, std::string secret,
                         StoreServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  EPS_CHECK(!secret.empty() && secret.size() <= kMaxSecretBytes,
            "the rendezvous store's secret must have 1 to {} bytes, found {}", kMaxSecretBytes,
            secret.size());
  impl_->secret = std::move(secret);
  impl_->options = options;
  HostPort hp{host, port};
  addrinfo* ai = resolve(hp, true);
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 256) == 0) break;
    last_error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  EPS_CHECK(fd >= 0, "cannot serve the rendezvous store at {} (--dist-init-addr): {}", hp.str(),
            last_error);
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  hp.port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  impl_->bound = hp;
  impl_->listen_fd = fd;
  EPS_CHECK(pipe2(impl_->wake_pipe, O_CLOEXEC) == 0, "pipe2 failed: {}", std::strerror(errno));
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

StoreServer::~StoreServer() {
  char byte = 1;
  (void)!write(impl_->wake_pipe[1], &byte, 1);
  impl_->thread.join();
  for (auto& [fd, conn] : impl_->conns) close(fd);
  close(impl_->listen_fd);
  close(impl_->wake_pipe[0]);
  close(impl_->wake_pipe[1]);
}

int StoreServer::port() const {
  return impl_->bound.port;
}
std::string StoreServer::address() const {
  return impl_->bound.str();
}

std::vector<SilentPeer> StoreServer::silent(std::chrono::milliseconds after) const {
  std::vector<SilentPeer> out;
  auto now = Clock::now();
  std::lock_guard<std::mutex> lock(impl_->beats_mutex);
  for (const auto& [fd, beat] : impl_->beats) {
    if (now - beat.last > after) {
      out.push_back({beat.label, std::chrono::duration<double>(now - beat.last).count()});
    }
  }
  return out;
}

int64_t StoreServer::rejected() const {
  return impl_->rejected.load();
}

int StoreServer::Impl::poll_timeout_ms() const {
  auto next = Clock::time_point::max();
  for (auto& [key, list] : waiters) {
    for (auto& w : list) next = std::min(next, w.deadline);
  }
  for (auto& [fd, conn] : conns) {
    if (!conn.authenticated) next = std::min(next, conn.accepted + options.hello_timeout);
  }
  if (next == Clock::time_point::max()) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

void StoreServer::Impl::run() {
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({wake_pipe[0], POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    for (auto& [fd, conn] : conns) fds.push_back({fd, POLLIN, 0});
    int n = poll(fds.data(), fds.size(), poll_timeout_ms());
    if (n < 0 && errno != EINTR) return;
    if (fds[0].revents) return;
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents) read_from(fds[i].fd);
    }
    if (fds[1].revents & POLLIN) accept_one();
    expire_waiters();
    expire_hellos();
  }
}

void StoreServer::Impl::accept_one() {
  int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  conns[fd] = Conn{fd, peer_name(fd), Clock::now()};
  // Many connections that say nothing must not use up this process's descriptors.
  std::vector<const Conn*> pending;
  for (auto& [other, conn] : conns) {
    if (!conn.authenticated) pending.push_back(&conn);
  }
  if (pending.size() > options.max_pending) {
    auto oldest = std::min_element(pending.begin(), pending.end(),
                                   [](auto* a, auto* b) { return a->accepted < b->accepted; });
    reject((*oldest)->fd, fmt::format("more than {} connections had not presented the secret",
                                      options.max_pending));
  }
}

void StoreServer::Impl::read_from(int fd) {
  auto it = conns.find(fd);
  if (it == conns.end()) return;
  char buf[65536];
  ssize_t got = recv(fd, buf, sizeof(buf), 0);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  Conn& conn = it->second;
  if (got <= 0) {
    if (conn.authenticated) {
      drop(fd);
    } else {
      reject(fd, "it closed without presenting the secret");
    }
    return;
  }
  conn.inbuf.append(buf, got);
  if (!conn.authenticated) {
    size_t used = 0;
    switch (check_hello(conn.inbuf, secret, &used)) {
      case Hello::kIncomplete:
        return;
      case Hello::kGarbage:
        reject(fd, "it sent bytes that are not the store's hello");
        return;
      case Hello::kWrongSecret:
        send_reply(fd, kDenied, {});
        reject(fd, "it presented the wrong secret");
        return;
      case Hello::kAccepted: {
        conn.inbuf.erase(0, used);
        conn.authenticated = true;
        uint8_t ok = kOk;
        if (!send_all(fd, &ok, 1)) {
          drop(fd);
          return;
        }
        break;
      }
    }
  }
  Request req;
  size_t used;
  bool too_long = false;
  while ((used = parse_request(conn.inbuf, req, &too_long)) > 0) {
    conn.inbuf.erase(0, used);
    handle_request(conn, req);
    if (!conns.count(fd)) return;
  }
  if (too_long) {
    spdlog::warn("rendezvous store {}: dropped {} ({}): a key or value over the size limit",
                 bound.str(), conn.label.empty() ? "a connection" : conn.label, conn.peer);
    drop(fd);
  }
}

void StoreServer::Impl::reject(int fd, const std::string& why) {
  auto it = conns.find(fd);
  if (it == conns.end()) return;
  int64_t count = ++rejected;
  if (count <= kMaxRejectLines) {
    spdlog::warn("rendezvous store {}: dropped a connection from {}: {}{}", bound.str(),
                 it->second.peer, why,
                 count == kMaxRejectLines ? " (further rejected connections are not logged)" : "");
  }
  drop(fd);
}

void StoreServer::Impl::expire_hellos() {
  auto now = Clock::now();
  std::vector<int> late;
  for (auto& [fd, conn] : conns) {
    if (!conn.authenticated && now >= conn.accepted + options.hello_timeout) late.push_back(fd);
  }
  for (int fd : late) {
    reject(fd, fmt::format("it did not present the secret within {} ms",
                           options.hello_timeout.count()));
  }
}

void StoreServer::Impl::drop(int fd) {
  auto it = conns.find(fd);
  if (it == conns.end()) return;
  std::string label = it->second.label;
  close(fd);
  conns.erase(it);
  {
    std::lock_guard<std::mutex> lock(beats_mutex);
    beats.erase(fd);
  }
  for (auto& [key, list] : waiters) {
    std::erase_if(list, [fd](const Waiter& w) { return w.fd == fd; });
  }
  if (!label.empty() && !data.count(kAbortKey)) {
    set_key(kAbortKey, fmt::format("{} is gone (its connection to the rendezvous store at {} "
                                   "closed: the process ended or its node is unreachable)",
                                   label, bound.str()));
  }
}

void StoreServer::Impl::set_key(const std::string& key, std::string value) {
  data[key] = std::move(value);
  auto it = waiters.find(key);
  if (it == waiters.end()) return;
  std::vector<Waiter> list = std::move(it->second);
  waiters.erase(it);
  for (auto& w : list) {
    if (!send_reply(w.fd, kOk, data[key])) drop(w.fd);
  }
}

void StoreServer::Impl::expire_waiters() {
  auto now = Clock::now();
  std::vector<int> expired;
  for (auto& [key, list] : waiters) {
    std::erase_if(list, [&](const Waiter& w) {
      if (w.deadline > now) return false;
      expired.push_back(w.fd);
      return true;
    });
  }
  for (int fd : expired) {
    if (!send_reply(fd, kMissing, {})) drop(fd);
  }
}

void StoreServer::Impl::handle_request(Conn& conn, const Request& req) {
  int fd = conn.fd;
  bool ok = true;
  switch (req.op) {
    case kSet:
      set_key(req.key, req.value);
      ok = send_reply(fd, kOk, {});
      break;
    case kSetIfAbsent: {
      bool absent = !data.count(req.key);
      if (absent) set_key(req.key, req.value);
      ok = send_reply(fd, absent ? kOk : kMissing, {});
      break;
    }
    case kCheck: {
      auto it = data.find(req.key);
      ok = it != data.end() ? send_reply(fd, kOk, it->second) : send_reply(fd, kMissing, {});
      break;
    }
    case kWait: {
      auto it = data.find(req.key);
      if (it != data.end()) {
        ok = send_reply(fd, kOk, it->second);
      } else if (req.timeout_ms == 0) {
        ok = send_reply(fd, kMissing, {});
      } else {
        auto deadline = req.timeout_ms < 0
                            ? Clock::time_point::max()
                            : Clock::now() + std::chrono::milliseconds(req.timeout_ms);
        waiters[req.key].push_back({fd, deadline});
      }
      break;
    }
    case kAdd: {
      int64_t delta = 0, current = 0;
      std::memcpy(&delta, req.value.data(), std::min<size_t>(8, req.value.size()));
      auto it = data.find(req.key);
      if (it != data.end() && it->second.size() == 8) std::memcpy(&current, it->second.data(), 8);
      current += delta;
      set_key(req.key, std::string(reinterpret_cast<const char*>(&current), 8));
      ok = send_reply(fd, kOk, data[req.key]);
      break;
    }
    case kRegister:
      conn.label = req.key;
      ok = send_reply(fd, kOk, {});
      break;
    case kBye:
      conn.label.clear();
      ok = send_reply(fd, kOk, {});
      break;
    case kBeat: {
      std::lock_guard<std::mutex> lock(beats_mutex);
      beats[fd] = Beat{req.key, Clock::now()};
      ok = send_reply(fd, kOk, {});
      break;
    }
    default:
      ok = false;
  }
  if (!ok) drop(fd);
}

// ---------------------------------------------------------------------------------------------
// Client.

StoreClient::StoreClient(const std::string& address, const std::string& secret,
                         std::chrono::milliseconds connect_timeout)
    : address_(address) {
  HostPort hp = HostPort::parse(address, "rendezvous store address");
  EPS_CHECK(!secret.empty() && secret.size() <= kMaxSecretBytes,
            "the rendezvous store's secret must have 1 to {} bytes, found {}", kMaxSecretBytes,
            secret.size());
  const std::string hello = encode_hello(secret);
  auto deadline = Clock::now() + connect_timeout;
  std::string last_error;
  while (true) {
    addrinfo* ai = resolve(hp, false);
    for (addrinfo* p = ai; p && fd_ < 0; p = p->ai_next) {
      int fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
      if (fd < 0) continue;
      uint8_t answer = 0;
      // Something else listening there must not hold us forever.
      timeval hello_wait{10, 0}, forever{0, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &hello_wait, sizeof(hello_wait));
      if (connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
        last_error = std::strerror(errno);
      } else if (!send_all(fd, hello.data(), hello.size()) || !recv_all(fd, &answer, 1)) {
        last_error = "the store closed the connection before accepting it";
      } else if (answer == kOk) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof(forever));
        fd_ = fd;
        continue;
      } else if (answer != kDenied) {
        last_error = "something other than an epserve store answers there";
      } else {
        close(fd);
        freeaddrinfo(ai);
        EPS_THROW(
            "the rendezvous store at {} refused this process's secret: every node of a job must "
            "use the same one ({})",
            address, kStoreSecretHint);
      }
      close(fd);
    }
    freeaddrinfo(ai);
    if (fd_ >= 0) break;
    EPS_CHECK(Clock::now() < deadline,
              "cannot reach the rendezvous store at {} within {} s ({}); is node 0 running with "
              "the same --dist-init-addr?",
              address, connect_timeout.count() / 1000.0, last_error);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

StoreClient::~StoreClient() {
  if (fd_ >= 0) close(fd_);
}

StoreClient::Reply StoreClient::call(uint8_t op, const std::string& key, std::string_view value,
                                     int64_t timeout_ms) {
  EPS_CHECK(fd_ >= 0, "rendezvous store connection to {} is closed", address_);
  std::string msg = encode_request(op, key, value, timeout_ms);
  EPS_CHECK(send_all(fd_, msg.data(), msg.size()),
            "lost the connection to the rendezvous store at {} (node 0 stopped?)", address_);
  Reply reply;
  EPS_CHECK(read_reply(fd_, reply.status, reply.data),
            "lost the connection to the rendezvous store at {} (node 0 stopped?)", address_);
  return reply;
}

void StoreClient::set(const std::string& key, std::string_view value) {
  call(kSet, key, value, 0);
}

bool StoreClient::set_if_absent(const std::string& key, std::string_view value) {
  return call(kSetIfAbsent, key, value, 0).status == kOk;
}

std::optional<std::string> StoreClient::check(const std::string& key) {
  Reply r = call(kCheck, key, {}, 0);
  if (r.status != kOk) return std::nullopt;
  return std::move(r.data);
}

std::optional<std::string> StoreClient::wait(const std::string& key,
                                             std::chrono::milliseconds timeout) {
  Reply r = call(kWait, key, {}, timeout.count() < 0 ? -1 : timeout.count());
  if (r.status != kOk) return std::nullopt;
  return std::move(r.data);
}

std::string StoreClient::get(const std::string& key, std::chrono::milliseconds timeout,
                             const std::string& what) {
  auto value = wait(key, timeout);
  EPS_CHECK(value.has_value(),
            "timed out after {} s waiting for {} (key '{}' at the rendezvous "
            "store {})",
            timeout.count() / 1000.0, what, key, address_);
  return std::move(*value);
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  Reply r = call(kAdd, key, std::string_view(reinterpret_cast<const char*>(&delta), 8), 0);
  int64_t value = 0;
  std::memcpy(&value, r.data.data(), std::min<size_t>(8, r.data.size()));
  return value;
}

void StoreClient::register_liveness(const std::string& label) {
  call(kRegister, label, {}, 0);
}

void StoreClient::bye() {
  call(kBye, {}, {}, 0);
}

void StoreClient::beat(const std::string& label) {
  call(kBeat, label, {}, 0);
}

void StoreClient::interrupt() {
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

}  // namespace epserve
