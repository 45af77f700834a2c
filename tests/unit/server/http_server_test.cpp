// The HTTP server on a real socket: a body that trickles in holds a handler thread only until the
// request's read deadline, and a body sent with a GET (which is not read) is never taken for the
// next request on the connection.
#include "server/http.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace epserve {
namespace {

using namespace std::chrono_literals;

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{10, 0};  // a test waiting for an answer fails after 10 s instead of hanging
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void send_all(int fd, const std::string& s) {
  ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
}

// Everything the server sends until it closes the connection (or 10 s pass).
std::string receive_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions options) {
    options.port = 0;
    server_ = std::make_unique<HttpServer>(options);
    server_->route("GET", "/ping", [](const HttpRequest&, HttpResponse& res) {
      res.json(200, R"({"pong":true})");
    });
    server_->route("POST", "/echo", [](const HttpRequest& req, HttpResponse& res) {
      res.json(200, "{\"bytes\":" + std::to_string(req.body.size()) + "}");
    });
    server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return server_->port(); }

  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

TEST_F(HttpServerTest, TricklingBodiesFreeTheirThreadsAtTheReadDeadline) {
  HttpServerOptions options;
  options.threads = 2;
  options.request_read_timeout_s = 1;
  start(options);
  // Two clients take both handler threads: complete headers, then one body byte every 0.5 s of
  // 100 (50 s without a deadline).
  std::vector<int> slow;
  for (int i = 0; i < 2; ++i) {
    slow.push_back(connect_to(port()));
    send_all(slow.back(),
             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
             "Content-Type: application/json\r\n\r\n");
  }
  std::atomic<bool> trickle{true};
  std::thread trickler([&] {
    while (trickle) {
      for (int fd : slow) ::send(fd, "[", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(500ms);
    }
  });
  std::this_thread::sleep_for(200ms);
  // A normal request still gets an answer (within the 10 s receive timeout).
  int fd = connect_to(port());
  send_all(fd, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string answer = receive_all(fd);
  ::close(fd);
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 200"));
  trickle = false;
  trickler.join();
  // The trickling requests were cut off at their deadline with an error answer.
  for (int s : slow) {
    EXPECT_THAT(receive_all(s), ::testing::StartsWith("HTTP/1.1 400"));
    ::close(s);
  }
}

TEST_F(HttpServerTest, ABodySentWithAGetIsNeverTheNextRequest) {
  start(HttpServerOptions{});
  const std::string hidden = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd = connect_to(port());
  send_all(fd, "GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(hidden.size()) +
                   "\r\n\r\n" + hidden);
  std::string answer = receive_all(fd);  // the server closes after its one answer
  ::close(fd);
  EXPECT_EQ(count(answer, "HTTP/1.1 "), 1u) << answer;
  EXPECT_THAT(answer, ::testing::HasSubstr("Connection: close"));
}

}  // namespace
}  // namespace epserve
