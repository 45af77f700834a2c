// What a stranger might send to the rendezvous store (comm/store.h): raw TCP connections that
// carry garbage, the old unauthenticated "set the abort key" message, a wrong secret, a huge
// length prefix, or nothing at all. Used by the store's unit test and the multi-rank test that
// attacks a running job's store.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "comm/store.h"

namespace epserve::testing {

// A plain TCP connection to host:port; -1 when it cannot connect.
inline int connect_raw(const std::string& address) {
  HostPort hp = HostPort::parse(address, "store address");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(hp.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline void send_raw(int fd, const std::string& bytes) {
  (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
}

// True when the other side closes fd within timeout_ms (bytes it sends first are skipped).
inline bool closed_by_peer(int fd, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[256];
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    if (got <= 0) return true;
  }
  return false;
}

// The 40-byte store request that stopped a whole server before the store asked for a secret:
// set "epserve/abort" to "pwned!".
inline std::string abort_request_bytes() {
  std::string key = "epserve/abort", value = "pwned!";
  std::string out(1, '\x01');
  uint32_t key_len = static_cast<uint32_t>(key.size());
  uint64_t value_len = value.size();
  int64_t timeout = 0;
  out.append(reinterpret_cast<const char*>(&key_len), 4);
  out += key;
  out.append(reinterpret_cast<const char*>(&value_len), 8);
  out += value;
  out.append(reinterpret_cast<const char*>(&timeout), 8);
  return out;
}

// A hello with the store's magic but a secret that is not the job's.
inline std::string wrong_hello() {
  std::string secret(64, 'x');
  std::string out = "EPSTORE1";
  uint16_t len = static_cast<uint16_t>(secret.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  return out + secret;
}

// A request whose key and value lengths claim gigabytes.
inline std::string huge_length_bytes() {
  std::string out(1, '\x02');
  out.append(4, '\xff');
  out.append(8, '\xff');
  return out;
}

// Opens one connection per attack and sends its bytes; the "silent" one sends nothing and the
// "half hello" one stops after the magic. Returns the fds (the caller checks and closes them).
inline std::vector<int> open_attacks(const std::string& address) {
  std::vector<std::string> payloads = {abort_request_bytes(),
                                       wrong_hello(),
                                       huge_length_bytes(),
                                       std::string("GET / HTTP/1.1\r\n\r\n"),
                                       "",
                                       "EPSTORE1"};
  std::vector<int> fds;
  for (const std::string& bytes : payloads) {
    int fd = connect_raw(address);
    if (fd >= 0 && !bytes.empty()) send_raw(fd, bytes);
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace epserve::testing
