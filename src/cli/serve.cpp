// epserve serve: SGLang's launch_server flags. The same command runs the frontend (no
// EPSERVE_RANK in the environment) and, re-executed by it, each rank process.
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "disagg/kv_agent.h"
#include "disagg/service.h"
#include "eplb/placement.h"
#include "runtime/parallel_setup.h"
#include "runtime/rank_main.h"
#include "server/server_args.h"
#include "server/server_main.h"

namespace epserve::cli {

namespace {

// This process's command line (the rank processes are started with the same one).
std::vector<std::string> own_argv() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> out;
  std::string arg;
  while (std::getline(f, arg, '\0')) out.push_back(arg);
  return out;
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// What a rank process needs from the flags; sizing flags left at 0 keep the runtime's defaults.
RankOptions rank_options(const ServerArgs& a) {
  RankOptions o;
  o.model_path = a.model_path;
  const char* ipc = std::getenv(kEnvIpcBase);
  EPS_CHECK(ipc != nullptr && *ipc != '\0',
            "a rank process needs {} (it is started by `epserve serve`, not by hand)", kEnvIpcBase);
  o.ipc_base = ipc;
  o.parallel = a.parallel;
  o.experts = a.experts;
  if (a.max_running_requests > 0) o.scheduler.max_running_requests = a.max_running_requests;
  if (a.chunked_prefill_size != 0) o.scheduler.chunked_prefill_size = a.chunked_prefill_size;
  if (a.page_size > 0) o.scheduler.page_size = a.page_size;
  o.scheduler.context_length = a.context_length;
  o.scheduler.enable_prefix_cache = !a.disable_radix_cache;
  o.scheduler.decode_log_interval = a.decode_log_interval;
  o.max_total_tokens = a.max_total_tokens;
  o.mem_fraction_static = a.mem_fraction_static;
  o.num_threads = env_int("EPSERVE_NUM_THREADS", 0);
  o.log_level = a.log_level;
  if (a.disaggregation_mode != "null") {
    o.scheduler.disaggregation_mode = a.disaggregation_mode;
    o.scheduler.disagg_timeouts = DisaggTimeouts::from_env();
    KvAgentOptions kv;
    kv.mode = a.disaggregation_mode;
    kv.net_devices = a.ucx_net_devices;
    kv.transfer_timeout = o.scheduler.disagg_timeouts.transfer;
    kv.drain_timeout = o.scheduler.disagg_timeouts.drain();
    o.kv_agent_factory = make_ucx_kv_agent_factory(kv);
  }
  return o;
}

}  // namespace

Command register_serve(CLI::App& app) {
  auto args = std::make_shared<ServerArgs>();
  CLI::App* sub = app.add_subcommand(
      "serve", "Serve a model over HTTP (OpenAI and SGLang APIs) with SGLang's flags");
  sub->allow_extras();
  add_server_args(*sub, *args);
  return Command{sub,
                 [args, sub] {
                   check_unknown_flags(sub->remaining());
                   resolve_server_args(*args);
                   args->argv = own_argv();
                   if (std::getenv("EPSERVE_RANK") != nullptr) {
                     // A terminal's Ctrl-C reaches the whole process group; the frontend then
                     // stops the ranks in order (and they die with it if it dies).
                     std::signal(SIGINT, SIG_IGN);
                     return run_rank(rank_options(*args));
                   }
                   return run_server(*args, make_disagg_service);
                 },
                 sglang_flag_names()};
}

}  // namespace epserve::cli
