// The router's own routes besides the inference ones: liveness and readiness, health_generate
// (one chosen pair, or worker, must pass its own /health_generate), the model and server info
// (from the first available prefill server, or worker), and flush_cache on every worker. With
// --api-key, the API-key check of the inference routes and /flush_cache.
#include <future>

#include "core/log.h"
#include "router/router.h"
#include "router/upstream.h"
#include "server/errors.h"
#include "server/sse.h"

namespace epserve {

using json = nlohmann::json;

namespace {

bool is_success(int status) {
  return status >= 200 && status < 300;
}

void text_response(HttpResponse& res, int status, std::string text) {
  res.status = status;
  res.content_type = "text/plain";
  res.body = std::move(text);
}

}  // namespace

void Router::register_routes(HttpServer& http) {
  if (!args_.api_key.empty()) {
    // As SGLang's router: the inference routes and /flush_cache need the key; the health, info
    // and model routes do not. Compared in constant time for keys of the right length.
    http.set_filter([expected = "Bearer " + args_.api_key](const HttpRequest& req, HttpResponse&) {
      const std::string& p = req.path;
      if (p != "/generate" && p != "/v1/chat/completions" && p != "/v1/completions" &&
          p != "/flush_cache") {
        return false;
      }
      const std::string got = req.header("Authorization");
      unsigned char diff = got.size() == expected.size() ? 0 : 1;
      for (size_t i = 0; i < got.size() && i < expected.size(); ++i) {
        diff |= static_cast<unsigned char>(got[i] ^ expected[i]);
      }
      if (diff != 0) {
        throw ApiError(401, "Incorrect API key provided (send 'Authorization: Bearer KEY')", "",
                       "invalid_api_key");
      }
      return false;
    });
  }
  for (const char* route : {"/generate", "/v1/chat/completions", "/v1/completions"}) {
    std::string path = route;
    http.route("POST", path, [this, path](const HttpRequest& req, HttpResponse& res) {
      route_limited(path, req, res);
    });
  }
  // /health is the router's liveness, as in SGLang's router; /readiness looks at the workers.
  for (const char* path : {"/health", "/liveness"}) {
    http.route("GET", path,
               [](const HttpRequest&, HttpResponse& res) { text_response(res, 200, "OK"); });
  }
  http.route("GET", "/readiness",
             [this](const HttpRequest&, HttpResponse& res) { readiness(res); });
  http.route("GET", "/health_generate",
             [this](const HttpRequest&, HttpResponse& res) { health_generate(res); });
  for (const char* path :
       {"/v1/models", "/get_model_info", "/model_info", "/get_server_info", "/server_info"}) {
    std::string p = path;
    http.route("GET", p, [this, p](const HttpRequest&, HttpResponse& res) { proxy_get(p, res); });
  }
  http.route("POST", "/flush_cache",
             [this](const HttpRequest&, HttpResponse& res) { flush_cache(res); });
}

void Router::proxy_get(const std::string& path, HttpResponse& res) {
  const WorkerList& workers = args_.pd_disaggregation ? prefill_ : regular_;
  std::shared_ptr<Worker> target;
  for (const auto& w : workers) {
    if (w->available()) {
      target = w;
      break;
    }
  }
  if (!target) {
    res.json(503, error_body(503,
                             std::string("No available ") +
                                 (args_.pd_disaggregation ? "prefill servers" : "workers"),
                             "", "server_selection_failed"));
    return;
  }
  ClientRequest req = worker_request("GET", path, args_.request_timeout_secs);
  ClientResponse r = http_send(target->base_url, req);
  if (r.status == 0) {
    res.json(500, error_body(500, "Failed to proxy request: " + r.error));
  } else {
    res.status = r.status;
    res.content_type = r.content_type.empty() ? "application/json" : r.content_type;
    res.body = std::move(r.body);
  }
}

void Router::health_generate(HttpResponse& res) {
  std::string why;
  std::vector<std::shared_ptr<Worker>> targets;
  if (args_.pd_disaggregation) {
    auto p = pick(prefill_, *prefill_policy_, "prefill", "", why);
    auto d = p ? pick(decode_, *decode_policy_, "decode", "", why) : nullptr;
    if (p && d) targets = {p, d};
  } else if (auto w = pick(regular_, *policy_, "regular", "", why)) {
    targets = {w};
  }
  if (targets.empty()) {
    res.json(503, error_body(503, "No healthy worker pair available: " + why));
    return;
  }
  std::vector<std::future<ClientResponse>> calls;
  for (const auto& w : targets) {
    ClientRequest req = worker_request("GET", "/health_generate", args_.request_timeout_secs);
    calls.push_back(
        std::async(std::launch::async, [url = w->base_url, req] { return http_send(url, req); }));
  }
  std::vector<std::string> errors;
  for (size_t i = 0; i < targets.size(); ++i) {
    ClientResponse r = calls[i].get();
    if (r.status == 0) {
      errors.push_back(fmt::format("{} {} error: {}", worker_kind_name(targets[i]->kind),
                                   targets[i]->url, r.error));
    } else if (!is_success(r.status)) {
      errors.push_back(fmt::format("{} {} returned status {}", worker_kind_name(targets[i]->kind),
                                   targets[i]->url, r.status));
    }
  }
  if (errors.empty()) {
    std::vector<std::string> urls;
    for (const auto& w : targets) urls.push_back(w->url);
    text_response(res, 200,
                  "Health generate passed on " + fmt::format("{}", fmt::join(urls, ", ")));
  } else {
    res.json(503, error_body(503, "Health generate failed: " +
                                      fmt::format("{}", fmt::join(errors, "; "))));
  }
}

void Router::readiness(HttpResponse& res) {
  auto count = [](const WorkerList& workers) {
    int healthy = 0;
    for (const auto& w : workers) healthy += w->healthy.load() ? 1 : 0;
    return json{{"healthy", healthy}, {"total", workers.size()}};
  };
  json body;
  bool ready;
  if (args_.pd_disaggregation) {
    body = {{"prefill", count(prefill_)}, {"decode", count(decode_)}};
    ready = body["prefill"]["healthy"] > 0 && body["decode"]["healthy"] > 0;
    if (!ready) {
      std::vector<std::string> reasons;
      if (body["prefill"]["healthy"] == 0) reasons.push_back("no healthy prefill workers");
      if (body["decode"]["healthy"] == 0) reasons.push_back("no healthy decode workers");
      body["reason"] = fmt::format("{}", fmt::join(reasons, ", "));
    }
  } else {
    json c = count(regular_);
    body = {{"healthy_workers", c["healthy"]}, {"total_workers", c["total"]}};
    ready = c["healthy"] > 0;
    if (!ready) body["reason"] = "no healthy workers";
  }
  body["status"] = ready ? "ready" : "not_ready";
  res.json(ready ? 200 : 503, dump_json(body));
}

void Router::flush_cache(HttpResponse& res) {
  std::vector<std::string> results, errors;
  for (const auto& w : all_workers()) {
    ClientRequest req = worker_request("POST", "/flush_cache", args_.request_timeout_secs);
    ClientResponse r = http_send(w->base_url, req);
    if (is_success(r.status)) {
      results.push_back(fmt::format("{} {}: OK", worker_kind_name(w->kind), w->url));
    } else if (r.status == 0) {
      errors.push_back(fmt::format("{} {} error: {}", worker_kind_name(w->kind), w->url, r.error));
    } else {
      errors.push_back(
          fmt::format("{} {} returned status: {}", worker_kind_name(w->kind), w->url, r.status));
    }
  }
  if (errors.empty()) {
    text_response(res, 200,
                  fmt::format("Cache flushed successfully: {}", fmt::join(results, "; ")));
  } else {
    text_response(res, 206,
                  fmt::format("Partial success. Results: {}. Errors: {}", fmt::join(results, "; "),
                              fmt::join(errors, "; ")));
  }
}

}  // namespace epserve
