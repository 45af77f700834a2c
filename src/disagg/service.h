// The frontend side of PD disaggregation (docs/expert_parallelism.md, "Prefill/decode
// disaggregation"). Started by `epserve serve --disaggregation-mode prefill|decode` beside the
// HTTP API.
//
// Prefill: the bootstrap service on --disaggregation-bootstrap-port (HTTP):
//   GET  /route        this server's KV layout per DP group (for operators and handshakes)
//   POST /kv/transfer  {"room", "target": {"ranks": [decode rank descriptions], "slots": [...]}}
//        answers 200 {"ok": true, "first_token", "bytes", "seconds"[, "logprob", ...]} once the
//        KV of the request with that bootstrap_room is in the decode ranks' memory, 202
//        {"pending": true} when that takes longer than one poll (~1 s: ask again with the same
//        body), or an OpenAI-style error (400 layouts that cannot match, 404/499/502/504 the
//        prefill request failed, was aborted, or the transfer failed or timed out), with
//        "settled": false when puts of the failed transfer may still land.
//   POST /kv/cancel    {"room"}: the decode side gives the room up; stops the prefill request
//        and answers 200 {"settled": true} once nothing more will be written for it, else 202.
// Decode: for every request whose pages its scheduler reserved, a relay thread asks the
// prefill server named by bootstrap_host/bootstrap_port until the KV is there (or an error or
// SGLANG_DISAGGREGATION_WAITING_TIMEOUT), then tells the scheduler; when the request ends first,
// or the failure is not settled, it cancels the room and tells the scheduler when the pages may
// be freed (docs/expert_parallelism.md, "Page ownership").
#pragma once

#include <memory>

#include "server/server_main.h"

namespace epserve {

// Null when --disaggregation-mode is null.
std::unique_ptr<ServerService> make_disagg_service(ServerContext& ctx);

}  // namespace epserve
