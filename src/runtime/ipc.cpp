#include "runtime/ipc.h"

#include <unistd.h>
#include <zmq.h>

#include <cerrno>

#include "core/error.h"

namespace epserve {

IpcContext::IpcContext() : context_(zmq_ctx_new()) {
  EPS_CHECK(context_ != nullptr, "zmq_ctx_new: {}", zmq_strerror(zmq_errno()));
}

IpcContext::~IpcContext() {
  zmq_ctx_term(context_);
}

IpcSocket::IpcSocket(IpcContext& context, Kind kind, int linger_ms)
    : socket_(zmq_socket(context.handle(), kind == Kind::kPush ? ZMQ_PUSH : ZMQ_PULL)) {
  EPS_CHECK(socket_ != nullptr, "zmq_socket: {}", zmq_strerror(zmq_errno()));
  int zero = 0;
  zmq_setsockopt(socket_, ZMQ_SNDHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_RCVHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
}

IpcSocket::IpcSocket(IpcSocket&& other) noexcept
    : socket_(other.socket_), bound_(std::move(other.bound_)) {
  other.socket_ = nullptr;
  other.bound_.clear();
}

IpcSocket::~IpcSocket() {
  close();
}

void IpcSocket::bind(const std::string& endpoint) {
  EPS_CHECK(zmq_bind(socket_, endpoint.c_str()) == 0, "cannot bind {}: {}", endpoint,
            zmq_strerror(zmq_errno()));
  bound_.push_back(endpoint);
}

void IpcSocket::connect(const std::string& endpoint) {
  EPS_CHECK(zmq_connect(socket_, endpoint.c_str()) == 0, "cannot connect to {}: {}", endpoint,
            zmq_strerror(zmq_errno()));
}

bool IpcSocket::send(const std::string& bytes, bool wait) {
  while (true) {
    if (zmq_send(socket_, bytes.data(), bytes.size(), wait ? 0 : ZMQ_DONTWAIT) >= 0) return true;
    if (zmq_errno() == EAGAIN && !wait) return false;
    EPS_CHECK(zmq_errno() == EINTR, "zmq_send: {}", zmq_strerror(zmq_errno()));
  }
}

std::optional<std::string> IpcSocket::receive() {
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, socket_, ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(&msg);
    return std::nullopt;
  }
  std::string bytes(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
  zmq_msg_close(&msg);
  return bytes;
}

void IpcSocket::close() {
  if (socket_ == nullptr) return;
  for (const std::string& endpoint : bound_) {
    zmq_unbind(socket_, endpoint.c_str());
    // ipc:// endpoints are socket files, which libzmq 4.3 leaves behind when it unbinds a named
    // path; whoever bound them removes them.
    if (endpoint.rfind("ipc://", 0) == 0) ::unlink(endpoint.c_str() + 6);
  }
  bound_.clear();
  zmq_close(socket_);
  socket_ = nullptr;
}

IpcReady ipc_poll(const IpcSocket& socket, int fd, std::chrono::milliseconds timeout) {
  zmq_pollitem_t items[2] = {{socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, fd, ZMQ_POLLIN, 0}};
  zmq_poll(items, fd >= 0 ? 2 : 1, static_cast<long>(timeout.count()));
  return {(items[0].revents & ZMQ_POLLIN) != 0, fd >= 0 && (items[1].revents & ZMQ_POLLIN) != 0};
}

}  // namespace epserve
