#include "runtime/ipc.h"

#include <sodium.h>
#include <unistd.h>
#include <zmq.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

namespace epserve {
namespace {

// A CURVE key pair in Z85 text (40 characters), as libzmq's options take it.
struct CurveKeys {
  char public_key[41] = {};
  char secret_key[41] = {};
};

// The key pair `role` ("server" or "client") of the job whose secret is `job_secret`: the secret
// key is BLAKE2b-256 keyed with BLAKE2b-256(job_secret) over a label naming the role; the
// public key follows from it.
CurveKeys derive_keys(const std::string& job_secret, const char* role) {
  EPS_CHECK(zmq_has("curve") != 0,
            "this libzmq was built without CURVE; the control plane across nodes needs it");
  EPS_CHECK(sodium_init() >= 0, "libsodium failed to initialise");
  EPS_CHECK(!job_secret.empty(), "the control plane needs the job's secret");
  std::array<unsigned char, 32> key{}, secret{};
  crypto_generichash(key.data(), key.size(),
                     reinterpret_cast<const unsigned char*>(job_secret.data()), job_secret.size(),
                     nullptr, 0);
  const std::string label = std::string("epserve control plane ") + role;
  crypto_generichash(secret.data(), secret.size(),
                     reinterpret_cast<const unsigned char*>(label.data()), label.size(), key.data(),
                     key.size());
  CurveKeys keys;
  EPS_CHECK(zmq_z85_encode(keys.secret_key, secret.data(), secret.size()) != nullptr,
            "zmq_z85_encode failed");
  EPS_CHECK(zmq_curve_public(keys.public_key, keys.secret_key) == 0, "zmq_curve_public: {}",
            zmq_strerror(zmq_errno()));
  sodium_memzero(secret.data(), secret.size());
  sodium_memzero(key.data(), key.size());
  return keys;
}

void set_option(void* socket, int option, const void* value, size_t size, const char* what) {
  EPS_CHECK(zmq_setsockopt(socket, option, value, size) == 0, "zmq_setsockopt {}: {}", what,
            zmq_strerror(zmq_errno()));
}

// tcp://[v6]:port needs the socket's IPv6 option.
void allow_ipv6(void* socket, const std::string& endpoint) {
  if (endpoint.rfind("tcp://[", 0) != 0) return;
  int one = 1;
  set_option(socket, ZMQ_IPV6, &one, sizeof(one), "ZMQ_IPV6");
}

std::string frame_text(const zmq_msg_t& frame) {
  return std::string(static_cast<const char*>(zmq_msg_data(const_cast<zmq_msg_t*>(&frame))),
                     zmq_msg_size(const_cast<zmq_msg_t*>(&frame)));
}

// Reads one ZAP request (RFC 27: version, request id, domain, address, identity, mechanism,
// credentials...) and answers 200 when the mechanism is CURVE and the client key is `allowed`.
// Returns false when no request was waiting.
bool answer_zap_request(void* zap, const std::string& allowed, std::atomic<int64_t>& refused) {
  std::vector<std::string> frames;
  while (true) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, zap, frames.empty() ? ZMQ_DONTWAIT : 0) < 0) {
      zmq_msg_close(&frame);
      return !frames.empty();
    }
    frames.push_back(frame_text(frame));
    bool more = zmq_msg_more(&frame) != 0;
    zmq_msg_close(&frame);
    if (!more) break;
  }
  // A malformed request still gets a reply (status 500): a REP socket that does not answer
  // would take no further request, and every later handshake would wait.
  const bool malformed = frames.size() < 6;
  const bool ok = !malformed && frames[5] == "CURVE" && frames.size() >= 7 && frames[6] == allowed;
  if (malformed) {
    const std::string reply[6] = {
        "1.0", frames.size() > 1 ? frames[1] : "", "500", "malformed ZAP request", "", ""};
    for (int i = 0; i < 6; ++i)
      zmq_send(zap, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
    return true;
  }
  if (!ok) {
    ++refused;
    spdlog::warn("control plane: refused a connection from {} (it does not hold this job's secret)",
                 frames[3]);
  }
  const std::string reply[6] = {
      "1.0", frames[1], ok ? "200" : "400", ok ? "OK" : "not this job's key", "", ""};
  for (int i = 0; i < 6; ++i) {
    zmq_send(zap, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
  }
  return true;
}

}  // namespace

IpcContext::IpcContext() : context_(zmq_ctx_new()) {
  EPS_CHECK(context_ != nullptr, "zmq_ctx_new: {}", zmq_strerror(zmq_errno()));
}

IpcContext::~IpcContext() {
  zap_stop_ = true;
  if (zap_thread_.joinable()) zap_thread_.join();
  zmq_ctx_term(context_);
}

void IpcContext::admit_job(const std::string& job_secret) {
  EPS_CHECK(!zap_thread_.joinable(), "the control plane's ZAP handler is already running");
  CurveKeys client = derive_keys(job_secret, "client");
  std::string allowed(32, '\0');
  EPS_CHECK(
      zmq_z85_decode(reinterpret_cast<uint8_t*>(allowed.data()), client.public_key) != nullptr,
      "zmq_z85_decode failed");
  // Bound here, before any secured socket can take a connection; the thread then owns it.
  void* zap = zmq_socket(context_, ZMQ_REP);
  EPS_CHECK(zap != nullptr, "zmq_socket: {}", zmq_strerror(zmq_errno()));
  int linger = 0;
  zmq_setsockopt(zap, ZMQ_LINGER, &linger, sizeof(linger));
  if (zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
    std::string why = zmq_strerror(zmq_errno());
    zmq_close(zap);
    EPS_THROW("cannot start the control plane's ZAP handler: {}", why);
  }
  zap_thread_ = std::thread([this, zap, allowed] {
    while (!zap_stop_) {
      zmq_pollitem_t item = {zap, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, 100) <= 0) continue;
      while (answer_zap_request(zap, allowed, refused_)) {
      }
    }
    zmq_close(zap);
  });
}

IpcSocket::IpcSocket(IpcContext& context, Kind kind, int linger_ms)
    : socket_(zmq_socket(context.handle(), kind == Kind::kPush ? ZMQ_PUSH : ZMQ_PULL)) {
  EPS_CHECK(socket_ != nullptr, "zmq_socket: {}", zmq_strerror(zmq_errno()));
  int zero = 0;
  zmq_setsockopt(socket_, ZMQ_SNDHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_RCVHWM, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
}

void IpcSocket::secure_as_server(const std::string& job_secret) {
  CurveKeys server = derive_keys(job_secret, "server");
  int one = 1;
  set_option(socket_, ZMQ_CURVE_SERVER, &one, sizeof(one), "ZMQ_CURVE_SERVER");
  set_option(socket_, ZMQ_CURVE_SECRETKEY, server.secret_key, 40, "ZMQ_CURVE_SECRETKEY");
  set_option(socket_, ZMQ_ZAP_DOMAIN, "epserve", 7, "ZMQ_ZAP_DOMAIN");
  sodium_memzero(server.secret_key, sizeof(server.secret_key));
}

void IpcSocket::secure_as_client(const std::string& job_secret) {
  secure_as_client(job_secret, job_secret);
}

void IpcSocket::secure_as_client(const std::string& job_secret, const std::string& client_secret) {
  CurveKeys server = derive_keys(job_secret, "server");
  CurveKeys client = derive_keys(client_secret, "client");
  set_option(socket_, ZMQ_CURVE_SERVERKEY, server.public_key, 40, "ZMQ_CURVE_SERVERKEY");
  set_option(socket_, ZMQ_CURVE_PUBLICKEY, client.public_key, 40, "ZMQ_CURVE_PUBLICKEY");
  set_option(socket_, ZMQ_CURVE_SECRETKEY, client.secret_key, 40, "ZMQ_CURVE_SECRETKEY");
  sodium_memzero(client.secret_key, sizeof(client.secret_key));
  sodium_memzero(server.secret_key, sizeof(server.secret_key));
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
  allow_ipv6(socket_, endpoint);
  EPS_CHECK(zmq_bind(socket_, endpoint.c_str()) == 0, "cannot bind {}: {}", endpoint,
            zmq_strerror(zmq_errno()));
  bound_.push_back(endpoint.back() == '*' ? last_endpoint() : endpoint);
}

std::string IpcSocket::last_endpoint() const {
  char endpoint[1024] = {};
  size_t size = sizeof(endpoint);
  EPS_CHECK(zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, endpoint, &size) == 0,
            "zmq_getsockopt ZMQ_LAST_ENDPOINT: {}", zmq_strerror(zmq_errno()));
  return endpoint;
}

void IpcSocket::connect(const std::string& endpoint) {
  allow_ipv6(socket_, endpoint);
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
