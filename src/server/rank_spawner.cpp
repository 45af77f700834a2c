#include "server/rank_spawner.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "runtime/protocol.h"

namespace epserve {

namespace {

std::string describe(int rank, int status) {
  if (WIFEXITED(status)) {
    return "rank " + std::to_string(rank) + " exited with status " +
           std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "rank " + std::to_string(rank) + " was killed by signal " +
           std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "rank " + std::to_string(rank) + " stopped";
}

}  // namespace

RankProcesses::RankProcesses(const RankSpawnOptions& o) {
  EPS_CHECK(o.world_size % o.nnodes == 0, "launcher: {} ranks over {} nodes", o.world_size,
            o.nnodes);
  int local = o.world_size / o.nnodes;
  pid_t parent = getpid();
  for (int local_rank = 0; local_rank < local; ++local_rank) {
    int rank = o.node_rank * local + local_rank;
    std::vector<std::pair<std::string, std::string>> env = o.env;
    env.emplace_back("EPSERVE_RANK", std::to_string(rank));
    env.emplace_back("EPSERVE_LOCAL_RANK", std::to_string(local_rank));
    env.emplace_back("EPSERVE_WORLD_SIZE", std::to_string(o.world_size));
    env.emplace_back("EPSERVE_LOCAL_WORLD_SIZE", std::to_string(local));
    env.emplace_back("EPSERVE_NNODES", std::to_string(o.nnodes));
    env.emplace_back("EPSERVE_NODE_RANK", std::to_string(o.node_rank));
    std::vector<char*> argv;
    for (const auto& a : o.args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    // The child's environment is built here: between fork and exec only async-signal-safe calls
    // are allowed (other threads may hold the allocator's locks).
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry = *e;
      std::string key = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const auto& [k, v] : env) overridden = overridden || k == key;
      if (!overridden) environment.push_back(std::move(entry));
    }
    for (const auto& [k, v] : env) environment.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = fork();
    EPS_CHECK(pid >= 0, "cannot start rank {}: fork: {}", rank, std::strerror(errno));
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);  // the frontend died before prctl took effect
      setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_DFL);
      execve("/proc/self/exe", argv.data(), envp.data());
      _exit(127);
    }
    children_.push_back(Child{rank, pid});
  }
}

RankProcesses::~RankProcesses() {
  terminate(std::chrono::milliseconds(0));
}

std::string RankProcesses::poll_exited() {
  for (Child& c : children_) {
    if (c.exited) continue;
    int status = 0;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.exited = true;
      c.status = status;
      return describe(c.rank, status);
    }
  }
  return "";
}

void RankProcesses::terminate(std::chrono::milliseconds grace) {
  auto wait_all = [&](std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      bool running = false;
      for (Child& c : children_) {
        if (c.exited) continue;
        int status = 0;
        if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
          c.exited = true;
          c.status = status;
        } else {
          running = true;
        }
      }
      if (!running || std::chrono::steady_clock::now() >= deadline) return !running;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  if (wait_all(grace)) return;
  for (Child& c : children_) {
    if (!c.exited) kill(c.pid, SIGTERM);
  }
  if (wait_all(std::chrono::milliseconds(3000))) return;
  for (Child& c : children_) {
    if (!c.exited) kill(c.pid, SIGKILL);
  }
  wait_all(std::chrono::milliseconds(5000));
}

bool RankProcesses::all_exited_cleanly() const {
  for (const Child& c : children_) {
    if (!c.exited || !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) return false;
  }
  return true;
}

}  // namespace epserve
