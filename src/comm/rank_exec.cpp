#include "comm/rank_exec.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "comm/store_secret.h"

extern char** environ;

namespace epserve {

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) args.push_back(arg);
  return args;
}

ExecPlan make_plan(const LaunchOptions& o, const std::vector<std::string>& args, int rank,
                   int local_rank, int local_ranks, const std::string& store_addr,
                   const std::string& store_secret, const std::vector<int>& cores, int threads) {
  ExecPlan plan;
  plan.argv_storage = args;
  static const char* kOwned[] = {kEnvRank,       kEnvLocalRank,  kEnvWorldSize, kEnvLocalWorldSize,
                                 kEnvNnodes,     kEnvNodeRank,   kEnvStoreAddr, kEnvCpuCores,
                                 kEnvNumThreads, kEnvStoreSecret};
  for (char** e = environ; *e; ++e) {
    std::string entry = *e;
    bool owned = false;
    for (const char* name : kOwned) {
      owned |= entry.rfind(std::string(name) + "=", 0) == 0;
    }
    if (!owned) plan.env_storage.push_back(entry);
  }
  std::string core_list;
  for (int c : cores) core_list += (core_list.empty() ? "" : ",") + std::to_string(c);
  std::pair<const char*, std::string> vars[] = {{kEnvRank, std::to_string(rank)},
                                                {kEnvLocalRank, std::to_string(local_rank)},
                                                {kEnvWorldSize, std::to_string(o.world_size)},
                                                {kEnvLocalWorldSize, std::to_string(local_ranks)},
                                                {kEnvNnodes, std::to_string(o.nnodes)},
                                                {kEnvNodeRank, std::to_string(o.node_rank)},
                                                {kEnvStoreAddr, store_addr},
                                                {kEnvStoreSecret, store_secret},
                                                {kEnvCpuCores, core_list},
                                                {kEnvNumThreads, std::to_string(threads)}};
  for (auto& [name, value] : vars) plan.env_storage.push_back(std::string(name) + "=" + value);
  // UCX warns about unmatched messages when a failing rank tears down; keep failures to one line
  // unless the user asked for UCX's log.
  if (!std::getenv("UCX_LOG_LEVEL")) plan.env_storage.push_back("UCX_LOG_LEVEL=error");
  for (auto& [name, value] : o.extra_env) plan.env_storage.push_back(name + "=" + value);
  for (auto& s : plan.argv_storage) plan.argv.push_back(s.data());
  plan.argv.push_back(nullptr);
  for (auto& s : plan.env_storage) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  CPU_ZERO(&plan.cpus);
  for (int c : cores) CPU_SET(c, &plan.cpus);
  plan.pin = !cores.empty();
  return plan;
}

// Runs in the forked child: only async-signal-safe calls until execve.
[[noreturn]] void exec_child(const ExecPlan& plan, const std::string& exe, pid_t parent) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  if (plan.pin) sched_setaffinity(0, sizeof(plan.cpus), &plan.cpus);
  execve(exe.c_str(), plan.argv.data(), plan.envp.data());
  const char msg[] = "epserve: cannot execute the rank program\n";
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(127);
}

}  // namespace epserve
