// Where a DP group's scheduler finds the frontend's control-plane sockets (runtime/ipc.h).
//
// One node: ipc:// socket files named from a prefix the launcher hands every rank
// (EPSERVE_IPC_BASE). DP attention over several nodes, where group leaders also run on nodes
// other than 0 (as in SGLang, which then switches its scheduler sockets to tcp:// on the host of
// --dist-init-addr): the frontend on node 0 binds each socket on ipc:// and on tcp:// at the host
// of --dist-init-addr (free ports), both secured with CURVE keys derived from the job's secret;
// node 0's launcher publishes the tcp:// endpoints in the rendezvous store under
// kControlPlaneKey, and leaders on other nodes read them there.
#pragma once

#include <string>
#include <vector>

#include "comm/launcher.h"
#include "runtime/parallel_options.h"

namespace epserve {

inline constexpr const char* kControlPlaneKey = "epserve/control_plane";

struct ControlPlaneEndpoints {
  std::string out;              // the frontend's PULL: what every scheduler sends back
  std::vector<std::string> in;  // per DP group: the frontend's PUSH to that group's scheduler

  // The ipc:// endpoints of one node: <base>-out and <base>-in-<group>.
  static ControlPlaneEndpoints ipc(const std::string& base, int num_groups);
  std::string to_json() const;
  // Throws epserve::Error when `text` is not what to_json wrote.
  static ControlPlaneEndpoints from_json(const std::string& text);
};

// True when some group leader runs on a node other than 0 (DP attention over several nodes):
// the control plane then also listens on tcp:// and is secured with CURVE.
bool control_plane_over_tcp(const ParallelOptions& parallel);

// The tcp:// endpoint, on a free port, at the host of --dist-init-addr HOST:PORT.
std::string control_plane_tcp_bind(const std::string& dist_init_addr);

// What a group leader connects to: on node 0 the ipc:// endpoints from `ipc_base`; on another
// node the tcp:// endpoints node 0 published in the store (waits for them up to `timeout`).
ControlPlaneEndpoints find_control_plane(const std::string& ipc_base, int num_groups,
                                         const RankInfo& info, std::chrono::milliseconds timeout);

}  // namespace epserve
