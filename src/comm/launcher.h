// Rank launching and supervision.
//
// One command per node starts that node's ranks: the launcher re-executes the same binary
// (/proc/self/exe) with the same arguments, adding EPSERVE_* variables that tell each child its
// place (rank, local rank, world size, node, store address, cores). Each rank then parses the same
// flags; is_rank_process() tells it that it is a rank, rank_info_from_env() where it stands.
//
// Node 0's launcher serves the rendezvous store at --dist-init-addr (default: a free loopback
// port); only processes that present the job's secret are heard there (comm/store_secret.h).
// Ranks send it a heartbeat every second; node 0's launcher reports ranks that fall silent (a
// stopped or hung process) through on_silent_ranks. The launcher supervises: it forwards
// SIGINT/SIGTERM, and when a rank dies (non-zero exit or a signal) it prints one line naming the
// rank and how it ended, posts that line to the store (so ranks and launchers on other nodes stop
// too), gives the other ranks `grace` to stop on their own, then SIGTERM, then SIGKILL, and returns
// non-zero. Ranks die with their launcher (PR_SET_PDEATHSIG), so no process is left behind.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "comm/store.h"

namespace epserve {

// Environment variables set for each rank process.
inline constexpr const char* kEnvRank = "EPSERVE_RANK";
inline constexpr const char* kEnvLocalRank = "EPSERVE_LOCAL_RANK";
inline constexpr const char* kEnvWorldSize = "EPSERVE_WORLD_SIZE";
inline constexpr const char* kEnvLocalWorldSize = "EPSERVE_LOCAL_WORLD_SIZE";
inline constexpr const char* kEnvNnodes = "EPSERVE_NNODES";
inline constexpr const char* kEnvNodeRank = "EPSERVE_NODE_RANK";
inline constexpr const char* kEnvStoreAddr = "EPSERVE_STORE_ADDR";
inline constexpr const char* kEnvCpuCores = "EPSERVE_CPU_CORES";  // "0,1,2"; empty = not pinned
inline constexpr const char* kEnvNumThreads = "EPSERVE_NUM_THREADS";
// The store's secret (kEnvStoreSecret in comm/store_secret.h) is set for each rank as well.

// Exit status of a rank that stops because another rank failed (it caught PeerFailure, see
// world.h); the launcher does not name such a rank as the one that failed.
inline constexpr int kExitPeerFailure = 3;

struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  int node_rank = 0;
  int nnodes = 1;
  std::string store_addr;      // empty for a single process that was not launched
  std::string store_secret;    // what the store asks of every connection
  std::vector<int> cpu_cores;  // the cores this rank is pinned to; empty when not pinned
  int num_threads = 1;         // suggested compute threads (cores / local ranks, at least 1)
};

// True when this process was started by run_launcher as a rank.
bool is_rank_process();
// Where this rank stands; for a process that is not a rank: rank 0 of a world of 1, with
// num_threads = the cores it may use.
RankInfo rank_info_from_env();

struct LaunchOptions {
  int world_size = 1;  // ranks over all nodes; must be a multiple of nnodes
  int nnodes = 1;
  int node_rank = 0;
  // HOST:PORT of the store node 0 serves. Empty: node 0 picks a free loopback port (then nnodes
  // must be 1). On node 0 HOST must be an address of this machine.
  std::string dist_init_addr;
  // argv of each rank, args[0] included. Empty: this process's own command line.
  std::vector<std::string> args;
  std::string executable = "/proc/self/exe";
  std::vector<std::pair<std::string, std::string>> extra_env;  // added to every rank
  bool pin_cores = true;  // pin ranks to disjoint core sets when there are enough cores
  // After a rank fails, how long the others get to stop by themselves before SIGTERM, and
  // between SIGTERM and SIGKILL.
  std::chrono::milliseconds grace{3000};
  // How long a launcher on node > 0 keeps trying to reach node 0's store.
  std::chrono::milliseconds connect_timeout{60000};
  // Receives the one-line report of a failure; default: "epserve: <line>" on stderr.
  std::function<void(const std::string&)> report;
  // The store's secret; empty: job_store_secret(nnodes) (comm/store_secret.h).
  std::string store_secret;
  // Node 0 only: keys set in the store before any rank starts (e.g. where the frontend listens).
  std::vector<std::pair<std::string, std::string>> store_values;
  // Node 0 only: called on the launcher's thread with the ranks whose heartbeat has been silent
  // for longer than heartbeat_timeout, whenever that set changes (empty: all answer again).
  std::function<void(const std::vector<SilentPeer>&)> on_silent_ranks;
  std::chrono::milliseconds heartbeat_timeout{5000};
};

// Starts this node's ranks and supervises them; returns 0 when all exit 0, 128+signal when
// interrupted, 1 after a failure.
int run_launcher(const LaunchOptions& options);

// Core sets for local ranks: disjoint contiguous slices of `cores` when there are at least as many
// cores as ranks, else one empty set per rank (no pinning).
std::vector<std::vector<int>> plan_core_sets(const std::vector<int>& cores, int local_ranks);
// Compute threads a rank should use: cores / local ranks, at least 1.
int suggested_threads(int num_cores, int local_ranks);
// The cores this process may run on (sched_getaffinity), in increasing order.
std::vector<int> allowed_cores();

}  // namespace epserve
