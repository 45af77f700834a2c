// Wire format of the rendezvous store (internal to store.cpp).
// Hello (first bytes of every connection): "EPSTORE1" | secret_len u16 | secret; the server
//          answers one status byte (kOk, or kDenied before it closes) or just closes on garbage.
// Request: op u8 | key_len u32 | key | value_len u64 | value | timeout_ms i64.
// Reply:   status u8 | data_len u64 | data.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace epserve::store_wire {

enum Op : uint8_t { kSet = 1, kWait, kCheck, kAdd, kRegister, kBye, kSetIfAbsent, kBeat };
enum Status : uint8_t { kOk = 0, kMissing = 1, kDenied = 2 };

inline constexpr char kHelloMagic[] = "EPSTORE1";
inline constexpr size_t kHelloMagicLen = 8;
inline constexpr size_t kMaxSecretBytes = 1024;
// Limits on what an authenticated peer may send (keys and values are small: addresses, counters).
inline constexpr uint32_t kMaxKeyBytes = 4096;
inline constexpr uint64_t kMaxValueBytes = uint64_t{64} << 20;

inline std::string encode_hello(std::string_view secret) {
  std::string out(kHelloMagic, kHelloMagicLen);
  uint16_t len = static_cast<uint16_t>(secret.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  out.append(secret);
  return out;
}

enum class Hello { kIncomplete, kAccepted, kWrongSecret, kGarbage };

// Checks the hello at the front of buf against `secret` (in time independent of where they
// differ); *used gets its length when accepted. Garbage is seen at its first wrong byte.
inline Hello check_hello(const std::string& buf, std::string_view secret, size_t* used) {
  size_t prefix = std::min(buf.size(), kHelloMagicLen);
  if (std::memcmp(buf.data(), kHelloMagic, prefix) != 0) return Hello::kGarbage;
  if (buf.size() < kHelloMagicLen + 2) return Hello::kIncomplete;
  uint16_t len;
  std::memcpy(&len, buf.data() + kHelloMagicLen, 2);
  if (len != secret.size()) return Hello::kWrongSecret;
  if (buf.size() < kHelloMagicLen + 2 + len) return Hello::kIncomplete;
  unsigned char diff = 0;
  for (size_t i = 0; i < len; ++i) diff |= buf[kHelloMagicLen + 2 + i] ^ secret[i];
  if (diff != 0) return Hello::kWrongSecret;
  *used = kHelloMagicLen + 2 + len;
  return Hello::kAccepted;
}

struct Request {
  uint8_t op = 0;
  std::string key;
  std::string value;
  int64_t timeout_ms = 0;
};

inline void append_raw(std::string& out, const void* p, size_t n) {
  out.append(static_cast<const char*>(p), n);
}

inline std::string encode_request(uint8_t op, std::string_view key, std::string_view value,
                                  int64_t timeout_ms) {
  std::string out;
  uint32_t key_len = static_cast<uint32_t>(key.size());
  uint64_t value_len = value.size();
  append_raw(out, &op, 1);
  append_raw(out, &key_len, 4);
  out.append(key);
  append_raw(out, &value_len, 8);
  out.append(value);
  append_raw(out, &timeout_ms, 8);
  return out;
}

// Parses one request from the front of buf; returns the bytes used, 0 if incomplete. A key or
// value longer than the limits above sets *too_long (the connection is then dropped).
inline size_t parse_request(const std::string& buf, Request& req, bool* too_long) {
  size_t pos = 0;
  if (buf.size() < 5) return 0;
  req.op = static_cast<uint8_t>(buf[0]);
  uint32_t key_len;
  std::memcpy(&key_len, buf.data() + 1, 4);
  pos = 5;
  if (key_len > kMaxKeyBytes) {
    *too_long = true;
    return 0;
  }
  if (buf.size() < pos + key_len + 8) return 0;
  req.key.assign(buf, pos, key_len);
  pos += key_len;
  uint64_t value_len;
  std::memcpy(&value_len, buf.data() + pos, 8);
  pos += 8;
  if (value_len > kMaxValueBytes) {
    *too_long = true;
    return 0;
  }
  if (buf.size() < pos + value_len + 8) return 0;
  req.value.assign(buf, pos, value_len);
  pos += value_len;
  std::memcpy(&req.timeout_ms, buf.data() + pos, 8);
  return pos + 8;
}

inline bool send_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t sent = ::send(fd, p, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    p += sent;
    n -= sent;
  }
  return true;
}

inline bool recv_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t got = ::recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= got;
  }
  return true;
}

inline bool send_reply(int fd, uint8_t status, std::string_view data) {
  std::string out;
  uint64_t len = data.size();
  append_raw(out, &status, 1);
  append_raw(out, &len, 8);
  out.append(data);
  return send_all(fd, out.data(), out.size());
}

inline bool read_reply(int fd, uint8_t& status, std::string& data) {
  uint64_t len;
  if (!recv_all(fd, &status, 1) || !recv_all(fd, &len, 8) || len > kMaxValueBytes) return false;
  data.resize(len);
  return len == 0 || recv_all(fd, data.data(), len);
}

}  // namespace epserve::store_wire
