#include "server/http_connections.h"

#include <fmt/format.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "server/errors.h"

namespace epserve {

namespace {

using Clock = std::chrono::steady_clock;

// After a response that closes the connection: how long and how much of what the client still
// sends is read and dropped before the socket is closed.
constexpr auto kDrainTime = std::chrono::milliseconds(2000);
constexpr size_t kDrainBytes = 16 << 20;
constexpr auto kSweepInterval = std::chrono::milliseconds(200);

enum class State {
  kIdle,      // kept alive, waiting for the next request
  kHeaders,   // a request's headers are arriving
  kDraining,  // write side shut; reading until the client closes
};

struct Connection {
  State state = State::kHeaders;
  std::string buffer;
  Clock::time_point deadline;
  size_t drained = 0;
};

// Raises the soft limit on open files so that `connections` fit with room for the rest of the
// process (ZeroMQ, model files); returns how many connections fit under the hard limit.
size_t fit_open_file_limit(size_t connections) {
  constexpr rlim_t kOtherFiles = 256;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return connections;
  rlim_t wanted = static_cast<rlim_t>(connections) + kOtherFiles;
  if (limit.rlim_cur < wanted && limit.rlim_cur != RLIM_INFINITY) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) return connections;
  size_t fit = std::min(connections, static_cast<size_t>(limit.rlim_cur > 2 * kOtherFiles
                                                             ? limit.rlim_cur - kOtherFiles
                                                             : limit.rlim_cur / 2));
  spdlog::warn("the open file limit ({}) allows {} HTTP connections, not {}", limit.rlim_cur, fit,
               connections);
  return fit;
}

bool has_complete_headers(const std::string& buffer, size_t searched_from) {
  size_t from = searched_from > 3 ? searched_from - 3 : 0;
  return buffer.find("\r\n\r\n", from) != std::string::npos;
}

// Best effort, never blocks: for answers to connections the gate gives up on.
void send_error(int fd, int status, const char* reason, const std::string& message) {
  std::string body = error_body(status, message);
  std::string response =
      "HTTP/1.1 " + std::to_string(status) + " " + reason +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  ssize_t ignored = ::send(fd, response.data(), response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
}

}  // namespace

struct ConnectionGate::Impl {
  struct Handback {
    int fd;
    std::string buffered;
    State state;
  };

  ConnectionLimits limits;
  Dispatch dispatch;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread thread;
  std::atomic<size_t> open{0};

  std::mutex mutex;  // guards handbacks and stopped
  std::vector<Handback> handbacks;
  bool stopped = false;

  std::unordered_map<int, Connection> connections;  // the gate thread's own

  void post(Handback h);
  void run();
  void add(Handback h);
  void read_from(int fd, Connection& c);
  void sweep();
  void start_draining(int fd, Connection& c);
  void forget(int fd);  // stops watching fd and closes it
  void close_fd(int fd) {
    ::close(fd);
    open.fetch_sub(1);
  }
};

void ConnectionGate::Impl::post(Handback h) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!stopped) {
      handbacks.push_back(std::move(h));
      uint64_t one = 1;
      ssize_t ignored = ::write(wake_fd, &one, sizeof(one));
      (void)ignored;
      return;
    }
  }
  close_fd(h.fd);
}

void ConnectionGate::Impl::add(Handback h) {
  if (h.state != State::kDraining && has_complete_headers(h.buffered, 0)) {
    dispatch(h.fd, std::move(h.buffered));
    return;
  }
  Connection c;
  c.state = h.state;
  c.buffer = std::move(h.buffered);
  c.deadline = Clock::now() + (c.state == State::kIdle      ? limits.keep_alive_timeout
                               : c.state == State::kHeaders ? limits.header_timeout
                                                            : kDrainTime);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = h.fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, h.fd, &ev) != 0) {
    close_fd(h.fd);
    return;
  }
  connections[h.fd] = std::move(c);
}

void ConnectionGate::Impl::forget(int fd) {
  ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  connections.erase(fd);
  close_fd(fd);
}

void ConnectionGate::Impl::start_draining(int fd, Connection& c) {
  ::shutdown(fd, SHUT_WR);
  c.state = State::kDraining;
  c.buffer.clear();
  c.buffer.shrink_to_fit();
  c.deadline = Clock::now() + kDrainTime;
}

void ConnectionGate::Impl::read_from(int fd, Connection& c) {
  char data[16384];
  ssize_t n = ::recv(fd, data, sizeof(data), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    forget(fd);
    return;
  }
  if (c.state == State::kDraining) {
    c.drained += static_cast<size_t>(n);
    if (c.drained > kDrainBytes) forget(fd);
    return;
  }
  if (c.state == State::kIdle) {
    c.state = State::kHeaders;
    c.deadline = Clock::now() + limits.header_timeout;
  }
  size_t searched = c.buffer.size();
  c.buffer.append(data, static_cast<size_t>(n));
  if (has_complete_headers(c.buffer, searched)) {
    std::string buffered = std::move(c.buffer);
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    connections.erase(fd);
    dispatch(fd, std::move(buffered));
  } else if (c.buffer.size() > limits.max_header_bytes) {
    send_error(fd, 431, "Request Header Fields Too Large",
               "the request headers are larger than " +
                   std::to_string(limits.max_header_bytes >> 10) + " KiB");
    start_draining(fd, c);
  }
}

void ConnectionGate::Impl::sweep() {
  Clock::time_point now = Clock::now();
  std::vector<int> expired;
  for (auto& [fd, c] : connections) {
    if (c.deadline > now) continue;
    if (c.state == State::kHeaders) {
      send_error(fd, 408, "Request Timeout",
                 fmt::format("the request headers did not arrive within {:g} s",
                             static_cast<double>(limits.header_timeout.count()) / 1000));
    }
    expired.push_back(fd);
  }
  for (int fd : expired) forget(fd);
}

void ConnectionGate::Impl::run() {
  std::vector<epoll_event> events(256);
  Clock::time_point next_sweep = Clock::now() + kSweepInterval;
  for (;;) {
    int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(kSweepInterval.count()));
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_fd) {
        uint64_t count = 0;
        ssize_t ignored = ::read(wake_fd, &count, sizeof(count));
        (void)ignored;
        continue;
      }
      auto it = connections.find(fd);
      if (it != connections.end()) read_from(fd, it->second);
    }
    std::vector<Handback> taken;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopped) break;
      taken.swap(handbacks);
    }
    for (Handback& h : taken) add(std::move(h));
    if (Clock::now() >= next_sweep) {
      sweep();
      next_sweep = Clock::now() + kSweepInterval;
    }
  }
}

ConnectionGate::ConnectionGate(ConnectionLimits limits, Dispatch dispatch)
    : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  impl_->limits.max_connections = fit_open_file_limit(limits.max_connections);
  impl_->dispatch = std::move(dispatch);
  impl_->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  EPS_CHECK(impl_->epoll_fd >= 0 && impl_->wake_fd >= 0, "epoll/eventfd: {}", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = impl_->wake_fd;
  EPS_CHECK(::epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, impl_->wake_fd, &ev) == 0, "epoll_ctl: {}",
            errno);
}

ConnectionGate::~ConnectionGate() {
  stop();
  ::close(impl_->wake_fd);
  ::close(impl_->epoll_fd);
}

void ConnectionGate::start() {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void ConnectionGate::stop() {
  std::vector<Impl::Handback> left;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (impl_->stopped) return;
    impl_->stopped = true;
    left.swap(impl_->handbacks);
    uint64_t one = 1;
    ssize_t ignored = ::write(impl_->wake_fd, &one, sizeof(one));
    (void)ignored;
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  for (auto& [fd, c] : impl_->connections) impl_->close_fd(fd);
  impl_->connections.clear();
  for (Impl::Handback& h : left) impl_->close_fd(h.fd);
}

void ConnectionGate::accept(int fd) {
  size_t open = impl_->open.fetch_add(1) + 1;
  if (open > impl_->limits.max_connections) {
    send_error(fd, 503, "Service Unavailable",
               "too many open connections (" + std::to_string(impl_->limits.max_connections) + ")");
    impl_->close_fd(fd);
    return;
  }
  impl_->post(Impl::Handback{fd, "", State::kHeaders});
}

void ConnectionGate::keep_alive(int fd, std::string buffered) {
  State state = buffered.empty() ? State::kIdle : State::kHeaders;
  impl_->post(Impl::Handback{fd, std::move(buffered), state});
}

void ConnectionGate::close(int fd) {
  ::shutdown(fd, SHUT_WR);
  impl_->post(Impl::Handback{fd, "", State::kDraining});
}

}  // namespace epserve
