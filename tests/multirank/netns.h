// Two "nodes" on one machine: two network namespaces joined by a veth pair, with addresses the
// test assigns inside them (10.213.<n>.1 and .2), so traffic between them goes nowhere else.
// run_nodes() starts one launcher per namespace (`ip netns exec`), with --nnodes 2 semantics and
// UCX_TLS=tcp,self so that rank traffic crosses the veth instead of shared memory. Needs root and
// iproute2; when `ip netns add` is not permitted, run_nodes returns kSkipped with the reason.
#pragma once

#include <unistd.h>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"

namespace epserve::test {

inline constexpr int kSkipped = -1;

// Runs a shell command; returns its exit status and stderr+stdout text.
int run_command(const std::string& cmd, std::string* output);

// The namespaces of one test (eps<pid>n<i>) and, for two nodes, the veth pair between them;
// removed when the object dies.
class Namespaces {
 public:
  explicit Namespaces(int nnodes) : tag_(std::to_string(getpid() % 100000)) {
    for (int i = 0; i < nnodes; ++i) names_.push_back("eps" + tag_ + "n" + std::to_string(i));
  }
  ~Namespaces() {
    std::string ignored;
    for (auto& n : created_) run_command("ip netns del " + n, &ignored);
  }
  // Creates the namespaces and a veth pair between node 0 and node 1 (two nodes).
  bool create(std::string* why) {
    std::string subnet = "10.213." + std::to_string(getpid() % 250 + 1);
    for (auto& n : names_) {
      std::string out;
      if (run_command("ip netns add " + n, &out) != 0) {
        *why =
            "multi-node test needs root and `ip netns` (iproute2): `ip netns add` failed: " + out;
        return false;
      }
      created_.push_back(n);
    }
    std::string a = "veps" + tag_ + "a", b = "veps" + tag_ + "b";
    veth_a_ = a;
    const std::vector<std::string> steps = {
        "ip link add " + a + " netns " + names_[0] + " type veth peer name " + b + " netns " +
            names_[1],
        "ip -n " + names_[0] + " addr add " + subnet + ".1/24 dev " + a,
        "ip -n " + names_[1] + " addr add " + subnet + ".2/24 dev " + b,
        "ip -n " + names_[0] + " link set " + a + " up",
        "ip -n " + names_[1] + " link set " + b + " up",
        "ip -n " + names_[0] + " link set lo up",
        "ip -n " + names_[1] + " link set lo up"};
    for (auto& step : steps) {
      std::string out;
      if (run_command(step, &out) != 0) {
        *why = "multi-node test could not set up the veth pair (`" + step + "`): " + out;
        return false;
      }
    }
    // The veth carrier comes up a moment after both ends are set up; UCX only lists running
    // interfaces, so wait for it.
    for (int i = 0; i < 2; ++i) {
      std::string dev = i == 0 ? a : b;
      bool up = false;
      for (int tries = 0; tries < 100 && !up; ++tries) {
        std::string out;
        run_command("ip -n " + names_[i] + " -o link show dev " + dev, &out);
        up = out.find("state UP") != std::string::npos;
        if (!up) usleep(50000);
      }
      if (!up) {
        *why = "multi-node test: the veth pair did not come up within 5 s";
        return false;
      }
    }
    node0_addr_ = subnet + ".1:29500";
    return true;
  }
  const std::string& name(int i) const { return names_[i]; }
  // Bytes node 0's end of the veth pair received so far.
  long long veth_rx_bytes() const {
    std::string out;
    run_command(
        "ip netns exec " + names_[0] + " cat /sys/class/net/" + veth_a_ + "/statistics/rx_bytes",
        &out);
    return std::atoll(out.c_str());
  }
  const std::string& node0_addr() const { return node0_addr_; }

 private:
  std::string tag_;
  std::vector<std::string> names_, created_;
  std::string node0_addr_;
  std::string veth_a_;
};

// In the test process: creates the namespaces, runs nnodes launchers of world_size ranks in
// total, removes the namespaces, returns the worst exit code (or kSkipped, reason in *why);
// *veth_bytes gets the bytes node 0 received over the veth.
// In a node process: runs that node's launcher and exits. In a rank process: runs body and exits.
int run_nodes(int nnodes, int world_size, const std::function<void(const RankInfo&)>& body,
              const RankRunOptions& options, std::string* why, long long* veth_bytes = nullptr);

}  // namespace epserve::test
