#include "runtime/control_plane.h"

#include <netdb.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "comm/store.h"
#include "core/error.h"

namespace epserve {

ControlPlaneEndpoints ControlPlaneEndpoints::ipc(const std::string& base, int num_groups) {
  ControlPlaneEndpoints e;
  e.out = base + "-out";
  for (int g = 0; g < num_groups; ++g) e.in.push_back(base + "-in-" + std::to_string(g));
  return e;
}

std::string ControlPlaneEndpoints::to_json() const {
  return nlohmann::json{{"out", out}, {"in", in}}.dump();
}

ControlPlaneEndpoints ControlPlaneEndpoints::from_json(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  EPS_CHECK(j.is_object() && j.contains("out") && j["out"].is_string() && j.contains("in") &&
                j["in"].is_array(),
            "the control plane's endpoints in the store are not readable: '{}'", text);
  ControlPlaneEndpoints e;
  e.out = j["out"].get<std::string>();
  for (const auto& in : j["in"]) {
    EPS_CHECK(in.is_string(), "the control plane's endpoints in the store are not readable: '{}'",
              text);
    e.in.push_back(in.get<std::string>());
  }
  return e;
}

bool control_plane_over_tcp(const ParallelOptions& parallel) {
  return parallel.nnodes > 1 && parallel.dp_attention();
}

namespace {

// ZeroMQ binds only numeric addresses; --dist-init-addr may name the host (the store resolves
// it), so resolve it here the same way and bind to the first address it gives.
std::string numeric_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
  EPS_CHECK(rc == 0 && result != nullptr, "cannot resolve --dist-init-addr host '{}': {}", host,
            gai_strerror(rc));
  char buf[NI_MAXHOST];
  rc = getnameinfo(result->ai_addr, result->ai_addrlen, buf, sizeof(buf), nullptr, 0,
                   NI_NUMERICHOST);
  freeaddrinfo(result);
  EPS_CHECK(rc == 0, "cannot resolve --dist-init-addr host '{}': {}", host, gai_strerror(rc));
  return buf;
}

}  // namespace

std::string control_plane_tcp_bind(const std::string& dist_init_addr) {
  HostPort hp = HostPort::parse(dist_init_addr, "--dist-init-addr");
  const std::string host = numeric_host(hp.host);
  if (host.find(':') != std::string::npos) return "tcp://[" + host + "]:*";
  return "tcp://" + host + ":*";
}

ControlPlaneEndpoints find_control_plane(const std::string& ipc_base, int num_groups,
                                         const RankInfo& info, std::chrono::milliseconds timeout) {
  if (info.node_rank == 0) return ControlPlaneEndpoints::ipc(ipc_base, num_groups);
  EPS_CHECK(!info.store_addr.empty(),
            "rank {} on node {} has no rendezvous store to find the "
            "frontend through",
            info.rank, info.node_rank);
  StoreClient store(info.store_addr, info.store_secret, timeout);
  ControlPlaneEndpoints e = ControlPlaneEndpoints::from_json(
      store.get(kControlPlaneKey, timeout, "the frontend's control-plane endpoints"));
  EPS_CHECK(static_cast<int>(e.in.size()) == num_groups,
            "node 0 published control-plane endpoints for {} DP groups, this rank expects {}",
            e.in.size(), num_groups);
  return e;
}

}  // namespace epserve
