// The connections of the HTTP server while no request of theirs is being handled. One thread
// watches them all (epoll): a connection gets a handler thread only once its request headers
// have fully arrived, so clients that connect and send slowly, or keep idle connections open,
// hold a file descriptor and a small buffer, never a thread. It enforces the limits that need
// no HTTP parsing: the number of open connections, the time and bytes allowed for a request's
// headers, the keep-alive idle time, and a bounded drain of what a client still sends after a
// response that closes its connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace epserve {

struct ConnectionLimits {
  size_t max_connections = 4096;  // open at once, handled or waiting; more are refused (503)
  size_t max_header_bytes = 32 << 10;
  std::chrono::milliseconds header_timeout{10000};  // from the first byte to the blank line
  std::chrono::milliseconds keep_alive_timeout{5000};
};

class ConnectionGate {
 public:
  // Called on the gate's thread with a connection whose buffered bytes hold complete request
  // headers (and maybe more); it must hand the connection back with keep_alive() or close().
  using Dispatch = std::function<void(int fd, std::string buffered)>;

  ConnectionGate(ConnectionLimits limits, Dispatch dispatch);
  ~ConnectionGate();
  ConnectionGate(const ConnectionGate&) = delete;
  ConnectionGate& operator=(const ConnectionGate&) = delete;

  void start();
  // Closes every connection the gate holds; later hand-backs are closed at once.
  void stop();

  // A new connection (from accept). Takes ownership of fd.
  void accept(int fd);
  // A handled connection that stays open: wait for its next request. `buffered`: bytes already
  // read past the last request (a pipelined request).
  void keep_alive(int fd, std::string buffered);
  // A handled connection to close: its write side is shut now; what the client still sends is
  // read and dropped for a short while, so that the response is not lost to a reset.
  void close(int fd);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace epserve
