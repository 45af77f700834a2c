// The frontend process of `epserve serve`: reads the model's config and tokenizer, binds the
// HTTP port, starts the rank processes (comm/launcher.h) and the link to their schedulers, serves
// until SIGINT or SIGTERM (or a rank dies), then aborts running requests and has every rank stop.
// Returns the exit status.
#pragma once

#include <signal.h>

#include <functional>
#include <memory>

#include "server/server_args.h"

namespace epserve {

struct ServerContext;

// A service beside the HTTP API, started once the frontend runs and destroyed before it stops
// (PD disaggregation's bootstrap service and KV relay, src/disagg).
class ServerService {
 public:
  virtual ~ServerService() = default;
};
using ServerServiceFactory = std::function<std::unique_ptr<ServerService>(ServerContext& ctx)>;

// The ZeroMQ endpoint prefix of the frontend (runtime/protocol.h), given to every rank.
inline constexpr const char* kEnvIpcBase = "EPSERVE_IPC_BASE";

int run_server(const ServerArgs& args, const ServerServiceFactory& service = {});

// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it starts: the main
// thread takes them with sigtimedwait on the returned set. Ignores SIGPIPE: a client that hangs
// up must not kill the process. (`epserve serve` and `epserve router`.)
sigset_t block_stop_signals();

}  // namespace epserve
