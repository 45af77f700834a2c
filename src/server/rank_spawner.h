// Starts this node's rank processes for `epserve serve` and watches them: each rank is this
// binary (/proc/self/exe) re-executed with the same arguments and EPSERVE_* variables saying
// where it stands. Ranks run in their own process group (a terminal's Ctrl-C reaches only the
// frontend, which shuts them down in order) and die with the frontend (PR_SET_PDEATHSIG).
// The multi-rank launcher of comm/ replaces this file when it lands.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace epserve {

// The ZeroMQ endpoint prefix of the frontend (runtime/protocol.h), given to every rank.
inline constexpr const char* kEnvIpcBase = "EPSERVE_IPC_BASE";

struct RankSpawnOptions {
  int world_size = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::vector<std::string> args;                         // argv, args[0] included
  std::vector<std::pair<std::string, std::string>> env;  // added to every rank
};

class RankProcesses {
 public:
  explicit RankProcesses(const RankSpawnOptions& options);
  ~RankProcesses();  // terminate()
  RankProcesses(const RankProcesses&) = delete;
  RankProcesses& operator=(const RankProcesses&) = delete;

  // A line naming a rank that has exited since the last call ("" when all still run).
  std::string poll_exited();
  // Waits up to `grace` for every rank to exit by itself, then SIGTERM, then SIGKILL.
  void terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  bool all_exited_cleanly() const;

 private:
  struct Child {
    int rank;
    pid_t pid;
    bool exited = false;
    int status = 0;
  };
  std::vector<Child> children_;
};

}  // namespace epserve
