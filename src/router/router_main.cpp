#include <signal.h>
#include <time.h>

#include <algorithm>
#include <thread>

#include "core/log.h"
#include "router/router.h"
#include "server/http.h"
#include "server/server_main.h"

namespace epserve {

int run_router(RouterArgs args) {
  const sigset_t signals = block_stop_signals();

  Router router(std::move(args));
  const RouterArgs& a = router.args();
  if (a.pd_disaggregation) {
    spdlog::info("PD router: {} prefill, {} decode server(s); policies prefill {}, decode {}",
                 a.prefill.size(), a.decode_urls.size(),
                 a.prefill_policy.empty() ? a.policy : a.prefill_policy,
                 a.decode_policy.empty() ? a.policy : a.decode_policy);
  } else {
    spdlog::info("router: {} worker(s); policy {}", a.worker_urls.size(), a.policy);
  }
  // Signals stay blocked in every thread; the main thread takes them here and below.
  auto sleep = [&signals](int seconds) {
    timespec wait{seconds, 0};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    return sig != SIGINT && sig != SIGTERM;
  };
  if (!router.wait_for_workers(sleep)) {
    spdlog::info("stopped while waiting for the workers");
    return 0;
  }
  if (a.dp_aware) router.expand_dp_aware();

  HttpServerOptions options;
  options.host = a.host;
  options.port = a.port;
  options.max_body_bytes = static_cast<size_t>(a.max_payload_size);
  // A handler thread per request in flight or queued (the refill admits more than
  // --max-concurrent-requests over time; streams hold theirs to the end).
  options.threads = std::clamp<size_t>(
      static_cast<size_t>(std::max(0, a.max_concurrent_requests)) + a.queue_size + 256, 512,
      options.max_connections);
  HttpServer http(options);
  router.register_routes(http);
  http.bind();
  router.start_background();
  std::thread server([&http] { http.serve(); });
  spdlog::info("router listening on http://{}:{}", a.host, http.port());

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  http.stop();
  server.join();
  router.stop_background();
  return 0;
}

}  // namespace epserve
