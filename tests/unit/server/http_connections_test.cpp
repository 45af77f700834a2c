// The connection gate over socket pairs: a connection is dispatched once its headers are in (with
// everything read so far), kept-alive connections come back, and the limits answer on their own:
// 503 past max_connections, 431 past max_header_bytes, 408 when the headers are too slow.
#include "server/http_connections.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <vector>

namespace epserve {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Collects the dispatched connections.
struct Dispatched {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<int, std::string>> items;

  ConnectionGate::Dispatch callback() {
    return [this](int fd, std::string buffered) {
      std::lock_guard<std::mutex> lock(mutex);
      items.emplace_back(fd, std::move(buffered));
      cv.notify_all();
    };
  }
  std::pair<int, std::string> wait_for(size_t n) {
    std::unique_lock<std::mutex> lock(mutex);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return items.size() >= n; }));
    return items.size() >= n ? items[n - 1] : std::pair<int, std::string>{-1, ""};
  }
};

// A connected pair: [0] is the server's end (given to the gate), [1] the client's.
struct Pair {
  int server = -1;
  int client = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    server = fds[0];
    client = fds[1];
    timeval tv{10, 0};  // a test that waits for an answer fails after 10 s instead of hanging
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Pair() { ::close(client); }
  void send(const std::string& s) const {
    EXPECT_EQ(::send(client, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // What the client receives until the server closes (or 10 s pass).
  std::string receive_all() const {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(client, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

TEST(ConnectionGate, DispatchesOnceTheHeadersAreIn) {
  Dispatched dispatched;
  ConnectionGate gate(ConnectionLimits{}, dispatched.callback());
  gate.start();
  Pair p;
  gate.accept(p.server);
  p.send("POST /generate HTTP/1.1\r\nHost: x\r\n");
  p.send("Content-Length: 2\r\n\r\n{}");
  auto [fd, buffered] = dispatched.wait_for(1);
  EXPECT_EQ(fd, p.server);
  EXPECT_EQ(buffered, "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");

  // Kept alive with a pipelined request already read: dispatched again at once.
  gate.keep_alive(fd, "GET /health HTTP/1.1\r\n\r\n");
  EXPECT_EQ(dispatched.wait_for(2).second, "GET /health HTTP/1.1\r\n\r\n");
  gate.keep_alive(fd, "");
  p.send("GET /health HTTP/1.1\r\n\r\n");
  EXPECT_EQ(dispatched.wait_for(3).second, "GET /health HTTP/1.1\r\n\r\n");

  // Closing shuts the write side: the client sees the end of the stream.
  gate.close(fd);
  EXPECT_EQ(p.receive_all(), "");
}

TEST(ConnectionGate, RefusesConnectionsPastTheLimit) {
  Dispatched dispatched;
  ConnectionLimits limits;
  limits.max_connections = 2;
  ConnectionGate gate(limits, dispatched.callback());
  gate.start();
  Pair a, b, c;
  gate.accept(a.server);
  gate.accept(b.server);
  gate.accept(c.server);
  std::string answer = c.receive_all();
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(answer, HasSubstr("too many open connections (2)"));
}

TEST(ConnectionGate, HeadersThatAreTooLargeGet431) {
  Dispatched dispatched;
  ConnectionLimits limits;
  limits.max_header_bytes = 1024;
  ConnectionGate gate(limits, dispatched.callback());
  gate.start();
  Pair p;
  gate.accept(p.server);
  p.send("GET / HTTP/1.1\r\nX-A: " + std::string(2000, 'a'));
  std::string answer = p.receive_all();
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 431"));
  EXPECT_THAT(answer, HasSubstr("\"error\""));
}

TEST(ConnectionGate, SlowHeadersGet408) {
  Dispatched dispatched;
  ConnectionLimits limits;
  limits.header_timeout = std::chrono::milliseconds(100);
  ConnectionGate gate(limits, dispatched.callback());
  gate.start();
  Pair p;
  gate.accept(p.server);
  p.send("GET / HTTP/1.1\r\n");
  std::string answer = p.receive_all();
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 408"));
  EXPECT_THAT(answer, HasSubstr("did not arrive within"));
  EXPECT_TRUE(dispatched.items.empty());
}

}  // namespace
}  // namespace epserve
