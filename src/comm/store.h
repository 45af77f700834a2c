// Rendezvous store: a small TCP key-value service where the ranks of one job meet.
//
// Node 0 serves it at --dist-init-addr (StoreServer, a background thread in the launcher); every
// rank and every node's launcher connects a StoreClient. Ranks publish their UCX worker addresses
// under keys and read the others' (get() waits until a key exists). Values are byte strings.
//
// Only the job's own processes are heard: every connection must first present the job's secret
// (comm/store_secret.h). A connection that sends anything else, the wrong secret, or nothing
// within StoreServerOptions::hello_timeout is dropped and logged; it never stops the job.
//
// Liveness: a client may register its connection under a label ("rank 3"). If that connection
// closes without bye() (the process died, or its node went away), the server sets kAbortKey to a
// line naming the label, so every other rank and launcher learns within milliseconds. Anyone may
// set kAbortKey with set_if_absent(); the first reason wins.
//
// Heartbeats: a client may also beat() under a label about once a second; silent() lists the
// labels not heard from for a while (a stopped or hung process whose connection is still open).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace epserve {

inline constexpr const char* kAbortKey = "epserve/abort";

struct HostPort {
  std::string host;
  int port = 0;
  // Parses "host:port" or "[v6addr]:port"; the error names `what` (e.g. "--dist-init-addr").
  static HostPort parse(const std::string& text, const std::string& what);
  std::string str() const;
};

struct StoreServerOptions {
  // How long a new connection has to present the secret.
  std::chrono::milliseconds hello_timeout{10000};
  // Connections still to present it; past this many the oldest is dropped.
  size_t max_pending = 64;
};

// A heartbeat label that has been silent for `seconds`.
struct SilentPeer {
  std::string label;
  double seconds = 0;
};

class StoreServer {
 public:
  // Binds host:port (port 0 picks a free port) and serves on a background thread; only
  // connections that present `secret` are heard.
  StoreServer(const std::string& host, int port, std::string secret,
              StoreServerOptions options = {});
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;
  std::string address() const;  // "host:port" with the bound port
  // Heartbeat labels whose last beat is older than `after` (their connections still open).
  std::vector<SilentPeer> silent(std::chrono::milliseconds after) const;
  // Connections dropped so far for not presenting the secret.
  int64_t rejected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class StoreClient {
 public:
  // Connects and presents `secret`, retrying until connect_timeout passes (the server may start
  // later than us). A server that refuses the secret is an error at once.
  StoreClient(const std::string& address, const std::string& secret,
              std::chrono::milliseconds connect_timeout);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  const std::string& address() const { return address_; }

  void set(const std::string& key, std::string_view value);
  // Sets the key only when it does not exist yet; returns whether this call set it.
  bool set_if_absent(const std::string& key, std::string_view value);
  // The value if the key exists now.
  std::optional<std::string> check(const std::string& key);
  // Waits until the key exists; nullopt when timeout passes (a negative timeout waits forever).
  std::optional<std::string> wait(const std::string& key, std::chrono::milliseconds timeout);
  // Like wait(), but a timeout throws an Error that names the key and `what` it was for.
  std::string get(const std::string& key, std::chrono::milliseconds timeout,
                  const std::string& what);
  // Adds delta to the integer at key (missing = 0) and returns the new value.
  int64_t add(const std::string& key, int64_t delta);

  // Marks this connection as belonging to `label`; see the liveness note at the top.
  void register_liveness(const std::string& label);
  // Ends the liveness registration (a clean exit).
  void bye();
  // A heartbeat of `label`; see the note at the top.
  void beat(const std::string& label);
  // Makes a call blocked in another thread fail at once (used to stop watcher threads).
  void interrupt();

 private:
  struct Reply {
    uint8_t status;
    std::string data;
  };
  Reply call(uint8_t op, const std::string& key, std::string_view value, int64_t timeout_ms);

  std::string address_;
  int fd_ = -1;
};

}  // namespace epserve
