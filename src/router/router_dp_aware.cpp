// --dp-aware, as SGLang's router does it: once the workers are healthy, each one's
// GET /get_server_info (with --api-key's Authorization) gives its dp_size, and the worker is
// replaced by dp_size workers named "URL@RANK". The policies then choose among ranks, and
// dispatch_regular sends each request to URL with data_parallel_rank RANK in its body.
#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"
#include "router/http_client.h"
#include "router/router.h"

namespace epserve {

using json = nlohmann::json;

void Router::expand_dp_aware() {
  WorkerList expanded;
  for (const auto& w : regular_) {
    ClientRequest req = worker_request("GET", "/get_server_info", args_.request_timeout_secs);
    ClientResponse r = http_send(w->base_url, req);
    EPS_CHECK(r.status != 0, "--dp-aware: failed to connect to {}/get_server_info: {}", w->base_url,
              r.error);
    EPS_CHECK(r.status >= 200 && r.status < 300,
              "--dp-aware: server returned status {} from {}/get_server_info", r.status,
              w->base_url);
    json info = json::parse(r.body, nullptr, false);
    EPS_CHECK(info.is_object() && info.contains("dp_size") &&
                  info["dp_size"].is_number_unsigned() && info["dp_size"].get<uint64_t>() >= 1 &&
                  info["dp_size"].get<uint64_t>() <= 4096,
              "--dp-aware: no dp_size in the response from {}/get_server_info", w->base_url);
    const int dp_size = info["dp_size"].get<int>();
    spdlog::info("--dp-aware: {} has dp_size {}", w->base_url, dp_size);
    for (int rank = 0; rank < dp_size; ++rank) {
      expanded.push_back(std::make_shared<Worker>(w->base_url, WorkerKind::regular, std::nullopt,
                                                  breaker_options(), rank));
    }
  }
  regular_ = std::move(expanded);
}

}  // namespace epserve
