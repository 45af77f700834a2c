// The control plane's sockets: ZeroMQ PUSH/PULL over ipc:// (or tcp://), one small API used by
// both ends of the wire (the frontend and each DP group's scheduler). This is the only file that
// includes zmq.h. Messages are whole byte strings (runtime/protocol.h encodes them).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace epserve {

class IpcContext {
 public:
  IpcContext();
  ~IpcContext();
  IpcContext(const IpcContext&) = delete;
  IpcContext& operator=(const IpcContext&) = delete;
  void* handle() const { return context_; }

 private:
  void* context_ = nullptr;
};

class IpcSocket {
 public:
  enum class Kind { kPush, kPull };
  // No high-water mark (messages queue until sent); linger_ms: how long close() keeps trying to
  // deliver what is queued.
  IpcSocket(IpcContext& context, Kind kind, int linger_ms = 1000);
  ~IpcSocket();
  IpcSocket(IpcSocket&& other) noexcept;
  IpcSocket& operator=(IpcSocket&&) = delete;
  IpcSocket(const IpcSocket&) = delete;
  IpcSocket& operator=(const IpcSocket&) = delete;

  // Throws epserve::Error naming the endpoint when it cannot be bound (e.g. taken).
  void bind(const std::string& endpoint);
  void connect(const std::string& endpoint);
  // Queues a message. wait = false: returns false instead of blocking when the peer is not
  // connected yet (a PUSH socket with no peer).
  bool send(const std::string& bytes, bool wait = true);
  // The next message, without blocking; nullopt when none is waiting.
  std::optional<std::string> receive();
  // Unbinds, closes, and removes the socket files of the ipc:// endpoints it bound (libzmq leaves
  // them behind). Called by the destructor.
  void close();

  void* handle() const { return socket_; }

 private:
  void* socket_ = nullptr;
  std::vector<std::string> bound_;
};

// Waits up to `timeout` until `socket` has a message to receive or `fd` (when >= 0) is
// readable. Returns {socket readable, fd readable}.
struct IpcReady {
  bool socket = false;
  bool fd = false;
};
IpcReady ipc_poll(const IpcSocket& socket, int fd, std::chrono::milliseconds timeout);

}  // namespace epserve
