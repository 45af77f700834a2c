// The frontend process of `epserve serve`: reads the model's config and tokenizer, binds the
// HTTP port, starts the rank processes (comm/launcher.h) and the link to their schedulers, serves
// until SIGINT or SIGTERM (or a rank dies), then aborts running requests and has every rank stop.
// Returns the exit status.
#pragma once

#include "server/server_args.h"

namespace epserve {

// The ZeroMQ endpoint prefix of the frontend (runtime/protocol.h), given to every rank.
inline constexpr const char* kEnvIpcBase = "EPSERVE_IPC_BASE";

int run_server(const ServerArgs& args);

}  // namespace epserve
