// Starting one rank process (internal to the launcher): the argv and environment it gets, and
// the code that runs between fork and exec.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "comm/launcher.h"

namespace epserve {

struct ExecPlan {
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  cpu_set_t cpus;
  bool pin = false;
};

// This process's command line (/proc/self/cmdline).
std::vector<std::string> own_command_line();

// argv and environment of local rank `local_rank`: this process's environment without EPSERVE_*
// place variables, then the rank's place, then o.extra_env.
ExecPlan make_plan(const LaunchOptions& o, const std::vector<std::string>& args, int rank,
                   int local_rank, int local_ranks, const std::string& store_addr,
                   const std::string& store_secret, const std::vector<int>& cores, int threads);

// In the forked child: only async-signal-safe calls until execve. Never returns.
[[noreturn]] void exec_child(const ExecPlan& plan, const std::string& exe, pid_t parent);

}  // namespace epserve
