// The control plane's sockets: ZeroMQ PUSH/PULL over ipc:// (or tcp://), one small API used by
// both ends of the wire (the frontend and each DP group's scheduler). This is the only file that
// includes zmq.h. Messages are whole byte strings (runtime/protocol.h encodes them).
//
// Over tcp:// (DP groups led from other nodes) the sockets are secured with CURVE: the frontend's
// sockets are CURVE servers, the schedulers' CURVE clients, and both key pairs are derived from
// the job's secret (comm/store_secret.h) with a keyed hash, so no key is ever sent or stored.
// A client with another secret fails the handshake (it encrypts to the wrong server key); CURVE
// alone would still admit any client that knows the server's public key, so the context's ZAP
// handler (admit_job) also requires the client key derived from the same secret.
// Traffic is encrypted as well.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace epserve {

class IpcContext {
 public:
  IpcContext();
  ~IpcContext();
  IpcContext(const IpcContext&) = delete;
  IpcContext& operator=(const IpcContext&) = delete;
  void* handle() const { return context_; }

  // Starts the ZAP handler (authentication for every CURVE server socket of this context): it
  // admits clients holding the key derived from `job_secret` and refuses every other, with one
  // warning naming the peer's address. Call before binding a secured socket.
  void admit_job(const std::string& job_secret);
  // Connections the ZAP handler refused so far.
  int64_t refused() const { return refused_; }

 private:
  void* context_ = nullptr;
  std::thread zap_thread_;
  std::atomic<bool> zap_stop_{false};
  std::atomic<int64_t> refused_{0};
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

  // CURVE with keys derived from the job's secret (see the top of this file): the binding end
  // is the server, the connecting end the client. Call before bind / connect. A server socket's
  // context must run admit_job first: libzmq 4.3 admits every CURVE client when no ZAP handler
  // is there.
  void secure_as_server(const std::string& job_secret);
  void secure_as_client(const std::string& job_secret);
  // A client that knows job_secret's server key but holds client_secret's client key (what a
  // stranger who learned the server's public key would be): for tests of the ZAP handler.
  void secure_as_client(const std::string& job_secret, const std::string& client_secret);

  // Throws epserve::Error naming the endpoint when it cannot be bound (e.g. taken). A tcp://
  // endpoint may end in :* (a free port); last_endpoint() then says which.
  void bind(const std::string& endpoint);
  std::string last_endpoint() const;
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
