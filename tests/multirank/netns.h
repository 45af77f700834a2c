// Two "nodes" on one machine: two network namespaces joined by a veth pair, with addresses the
// test assigns inside them (10.213.<n>.1 and .2), so traffic between them goes nowhere else.
// run_nodes() starts one launcher per namespace (`ip netns exec`), with --nnodes 2 semantics and
// UCX_TLS=tcp,self so that rank traffic crosses the veth instead of shared memory. Needs root and
// iproute2; when `ip netns add` is not permitted, run_nodes returns kSkipped with the reason.
#pragma once

#include <functional>
#include <string>

#include "harness.h"

namespace epserve::test {

inline constexpr int kSkipped = -1;

// In the test process: creates the namespaces, runs nnodes launchers of world_size ranks in
// total, removes the namespaces, returns the worst exit code (or kSkipped, reason in *why);
// *veth_bytes gets the bytes node 0 received over the veth.
// In a node process: runs that node's launcher and exits. In a rank process: runs body and exits.
int run_nodes(int nnodes, int world_size, const std::function<void(const RankInfo&)>& body,
              const RankRunOptions& options, std::string* why, long long* veth_bytes = nullptr);

}  // namespace epserve::test
