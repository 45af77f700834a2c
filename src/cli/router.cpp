// epserve router: SGLang router's flags (sglang_router.launch_router) in front of prefill and
// decode servers (--pd-disaggregation) or plain ones (--worker-urls).
#include "router/router.h"
#include "cli/commands.h"
#include "core/log.h"
#include "router/router_args.h"

namespace epserve::cli {

Command register_router(CLI::App& app) {
  auto args = std::make_shared<RouterArgs>();
  CLI::App* sub = app.add_subcommand(
      "router",
      "Route requests over epserve servers, prefill/decode disaggregated or not, with "
      "SGLang router's flags");
  sub->allow_extras();
  add_router_args(*sub, *args);
  return Command{sub,
                 [args, sub] {
                   set_log_level(args->log_level);
                   bool policy_given = !args->policy.empty();
                   resolve_router_args(*args, sub->remaining());
                   if (!policy_given) {
                     spdlog::info(
                         "--policy not given: SGLang's default cache_aware is not "
                         "implemented; using round_robin");
                   }
                   return run_router(*args);
                 },
                 refused_router_flag_names()};
}

}  // namespace epserve::cli
