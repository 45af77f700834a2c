// The frontend process of `epserve serve`: reads the model's config and tokenizer, binds the
// HTTP port, starts the rank processes and the link to their schedulers, serves until SIGINT or
// SIGTERM (or a rank dies), then aborts running requests and stops every rank. Returns the exit
// status.
#pragma once

#include "server/server_args.h"

namespace epserve {

int run_server(const ServerArgs& args);

}  // namespace epserve
