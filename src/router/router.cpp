#include "router/router.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "core/log.h"
#include "router/logprob_merge.h"
#include "router/upstream.h"
#include "server/errors.h"
#include "server/sse.h"

namespace epserve {

using json = nlohmann::json;

namespace {

constexpr int64_t kMaxBootstrapItems = 65536;

bool is_success(int status) {
  return status >= 200 && status < 300;
}

// SGLang's router retries these statuses.
bool is_retryable(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

uint64_t random_room() {
  thread_local std::mt19937_64 engine(std::random_device{}());
  return engine() & 0x7fffffffffffffffULL;  // [0, 2^63 - 1], as SGLang's router draws it
}

void error_response(HttpResponse& res, int status, const std::string& message,
                    const std::string& code = "") {
  res = HttpResponse{};
  res.json(status, error_body(status, message, "", code));
}

// A worker's non-2xx answer, passed on as it came.
void pass_through(HttpResponse& res, int status, const std::string& content_type,
                  std::string body) {
  res = HttpResponse{};
  res.status = status;
  res.content_type = content_type.empty() ? "application/json" : content_type;
  res.body = std::move(body);
}

// A decode server's error answer as SGLang's router gives it: the message of its error body, with
// the status kept for 400, 404, 500, 502 and 503 (others become 500) when not streaming; a stream
// request keeps decode's status as it was.
void decode_error_response(HttpResponse& res, int status, const std::string& body, bool stream) {
  json parsed = json::parse(body, nullptr, false);
  std::string message = body;
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object() &&
      parsed["error"].contains("message") && parsed["error"]["message"].is_string()) {
    message = parsed["error"]["message"];
  } else if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    message = parsed["message"];
  }
  std::string code = "decode_error";
  int out = stream ? status : 500;
  switch (status) {
    case 400:
      code = "decode_bad_request";
      out = status;
      break;
    case 404:
      code = "decode_not_found";
      out = status;
      break;
    case 500:
      code = "decode_internal_error";
      out = status;
      break;
    case 502:
      code = "decode_bad_gateway";
      out = status;
      break;
    case 503:
      code = "decode_unavailable";
      out = status;
      break;
    default:
      break;
  }
  error_response(res, out, message, code);
}

// The event a stream ends with when its worker fails mid-way (the client sees an error, never a
// silent end or a hang).
std::string stream_error_event(const std::string& message) {
  return sse_event(json::parse(error_body(502, message)));
}

// The text cache_aware routes a chat request by, as SGLang's router extracts it: the text of the
// system and user messages (text parts of a list), joined by spaces.
std::string chat_routing_text(const json& body) {
  std::string out;
  auto add = [&](const std::string& piece) {
    if (piece.empty()) return;
    if (!out.empty()) out += ' ';
    out += piece;
  };
  if (!body.contains("messages") || !body["messages"].is_array()) return out;
  for (const auto& m : body["messages"]) {
    if (!m.is_object()) continue;
    std::string role = m.value("role", "");
    if (role != "system" && role != "user") continue;
    const json content = m.value("content", json());
    if (content.is_string()) {
      add(content.get<std::string>());
    } else if (content.is_array()) {
      for (const auto& part : content) {
        if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
            part["text"].is_string()) {
          add(part["text"].get<std::string>());
        }
      }
    }
  }
  return out;
}

}  // namespace

CircuitBreakerOptions Router::breaker_options() const {
  CircuitBreakerOptions breaker;
  breaker.failure_threshold = args_.cb_failure_threshold;
  breaker.success_threshold = args_.cb_success_threshold;
  breaker.timeout_s = args_.cb_timeout_duration_secs;
  breaker.disabled = args_.disable_circuit_breaker;
  return breaker;
}

Router::Router(RouterArgs args) : args_(std::move(args)) {
  const CircuitBreakerOptions breaker = breaker_options();
  for (const auto& p : args_.prefill) {
    prefill_.push_back(
        std::make_shared<Worker>(p.url, WorkerKind::prefill, p.bootstrap_port, breaker));
  }
  for (const auto& url : args_.decode_urls) {
    decode_.push_back(std::make_shared<Worker>(url, WorkerKind::decode, std::nullopt, breaker));
  }
  for (const auto& url : args_.worker_urls) {
    regular_.push_back(std::make_shared<Worker>(url, WorkerKind::regular, std::nullopt, breaker));
  }
  const CacheAwareOptions& ca = args_.cache_aware;
  policy_ = make_policy(args_.policy, ca);
  prefill_policy_ =
      make_policy(args_.prefill_policy.empty() ? args_.policy : args_.prefill_policy, ca);
  decode_policy_ =
      make_policy(args_.decode_policy.empty() ? args_.policy : args_.decode_policy, ca);
  if (args_.max_concurrent_requests > 0) {
    limiter_ = std::make_shared<ConcurrencyLimiter>(args_.max_concurrent_requests,
                                                    args_.rate_limit_tokens_per_second,
                                                    args_.queue_size, args_.queue_timeout_secs);
  }
}

Router::~Router() {
  stop_background();
}

WorkerList Router::all_workers() const {
  WorkerList all = prefill_;
  all.insert(all.end(), decode_.begin(), decode_.end());
  all.insert(all.end(), regular_.begin(), regular_.end());
  return all;
}

ClientRequest Router::worker_request(const std::string& method, const std::string& path,
                                     int timeout_s) const {
  ClientRequest req;
  req.method = method;
  req.path = path;
  req.timeout_s = timeout_s;
  if (!args_.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + args_.api_key);
  return req;
}

// The request headers SGLang's router passes on to the workers; with --api-key the router's own
// Authorization instead of the client's (which was checked to be the same).
std::vector<std::pair<std::string, std::string>> Router::worker_headers(
    const HttpRequest& req) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if ((lower == "authorization" && args_.api_key.empty()) || lower == "x-request-id" ||
        lower == "x-correlation-id" || lower.rfind("x-request-id-", 0) == 0) {
      out.emplace_back(name, value);
    }
  }
  if (!args_.api_key.empty()) out.emplace_back("Authorization", "Bearer " + args_.api_key);
  return out;
}

void Router::inject_bootstrap(json& body, const Worker& prefill, size_t batch_size) {
  const std::string host = worker_hostname(prefill.base_url);
  const json port = prefill.bootstrap_port ? json(*prefill.bootstrap_port) : json(nullptr);
  if (batch_size > 0) {
    json hosts = json::array(), ports = json::array(), rooms = json::array();
    for (size_t i = 0; i < batch_size; ++i) {
      hosts.push_back(host);
      ports.push_back(port);
      rooms.push_back(random_room());
    }
    body["bootstrap_host"] = std::move(hosts);
    body["bootstrap_port"] = std::move(ports);
    body["bootstrap_room"] = std::move(rooms);
  } else {
    body["bootstrap_host"] = host;
    body["bootstrap_port"] = port;
    body["bootstrap_room"] = random_room();
  }
}

Router::Traits Router::request_traits(const std::string& route, const json& body) {
  Traits t;
  t.stream = body.contains("stream") && body["stream"] == true;
  auto is_list = [](const json& v) { return v.is_array() && !v.empty(); };
  if (route == "/generate") {
    t.return_logprob = body.contains("return_logprob") && body["return_logprob"] == true;
    // A batch: a list of texts, or a list of token-id lists.
    if (body.contains("text") && is_list(body["text"])) t.batch_size = body["text"].size();
    if (body.contains("input_ids") && is_list(body["input_ids"]) &&
        body["input_ids"][0].is_array()) {
      t.batch_size = body["input_ids"].size();
    }
    if (body.contains("text") && body["text"].is_string()) t.text = body["text"];
    if (t.batch_size > 0 && body.contains("text") && is_list(body["text"]) &&
        body["text"][0].is_string()) {
      t.text = body["text"][0];
    }
  } else if (route == "/v1/chat/completions") {
    t.text = chat_routing_text(body);
    t.return_logprob = body.contains("logprobs") && body["logprobs"] == true;
    if (body.contains("n") && body["n"].is_number_integer() && body["n"].get<int64_t>() > 1) {
      // One room per choice; a bound so that a huge n cannot make the router allocate rooms
      // without end (the server refuses such an n anyway).
      if (body["n"].get<int64_t>() > kMaxBootstrapItems) {
        bad_request(fmt::format("n must be at most {}", kMaxBootstrapItems), "n");
      }
      t.batch_size = body["n"].get<size_t>();
    }
  } else if (route == "/v1/completions") {
    t.return_logprob = body.contains("logprobs") && !body["logprobs"].is_null();
    // A list of prompts (strings or token-id lists); a flat list of ids is one prompt.
    if (body.contains("prompt") && is_list(body["prompt"]) &&
        (body["prompt"][0].is_string() || body["prompt"][0].is_array())) {
      t.batch_size = body["prompt"].size();
    }
    if (body.contains("prompt") && body["prompt"].is_string()) t.text = body["prompt"];
    if (t.batch_size > 0 && body["prompt"][0].is_string()) t.text = body["prompt"][0];
  }
  return t;
}

std::shared_ptr<Worker> Router::pick(const WorkerList& workers, Policy& policy, const char* kind,
                                     const std::string& text, std::string& why) {
  WorkerList available;
  for (const auto& w : workers) {
    if (w->available()) available.push_back(w);
  }
  if (available.empty()) {
    why = fmt::format("No available {} workers (all circuits open or unhealthy)", kind);
    return nullptr;
  }
  return policy.select(available, text);
}

int Router::backoff_ms(int attempt) const {
  double delay = args_.retry_initial_backoff_ms * std::pow(args_.retry_backoff_multiplier, attempt);
  delay = std::min(delay, static_cast<double>(args_.retry_max_backoff_ms));
  double jitter = std::clamp(args_.retry_jitter_factor, 0.0, 1.0);
  if (jitter > 0) {
    thread_local std::mt19937_64 engine(std::random_device{}());
    delay += delay * std::uniform_real_distribution<double>(-jitter, jitter)(engine);
  }
  return static_cast<int>(std::max(0.0, delay));
}

namespace {

// One admitted request's token; given back once, when the response is done.
class LimiterPermit {
 public:
  explicit LimiterPermit(std::shared_ptr<ConcurrencyLimiter> limiter)
      : limiter_(std::move(limiter)) {}
  ~LimiterPermit() { release(); }
  void release() {
    if (auto l = std::exchange(limiter_, nullptr)) l->release();
  }

 private:
  std::shared_ptr<ConcurrencyLimiter> limiter_;
};

}  // namespace

void Router::route_limited(const std::string& route, const HttpRequest& req, HttpResponse& res) {
  if (!limiter_) return route_inference(route, req, res);
  switch (limiter_->acquire()) {
    case Admission::queue_full:
      spdlog::warn("{}: no token and the queue is full (or off): 429", route);
      return error_response(
          res, 429,
          fmt::format("Too many requests: the router admits {} at once (--max-concurrent-requests) "
                      "and its queue (--queue-size {}) is full",
                      args_.max_concurrent_requests, args_.queue_size),
          "rate_limit_exceeded");
    case Admission::queue_timeout:
      spdlog::warn("{}: no token within the queue timeout: 408", route);
      return error_response(res, 408,
                            fmt::format("Request timed out after {} s in the router's queue "
                                        "(--queue-timeout-secs)",
                                        args_.queue_timeout_secs),
                            "queue_timeout");
    case Admission::admitted:
      break;
  }
  auto permit = std::make_shared<LimiterPermit>(limiter_);
  route_inference(route, req, res);  // an exception gives the token back too
  if (res.stream) {
    res.stream = [inner = std::move(res.stream), permit](StreamWriter& writer) {
      inner(writer);
      permit->release();
    };
  }
}

void Router::route_inference(const std::string& route, const HttpRequest& req, HttpResponse& res) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    bad_request("the request body must be a JSON object");
  const Traits traits = request_traits(route, body);
  const auto headers = worker_headers(req);
  const int attempts = args_.disable_retries ? 1 : std::max(1, args_.retry_max_retries);
  for (int attempt = 0;; ++attempt) {
    res = HttpResponse{};
    if (args_.pd_disaggregation) {
      dispatch_pd(route, body, traits, headers, res);
    } else {
      dispatch_regular(route, req.body, body, traits, headers, res);
    }
    if (!is_retryable(res.status) || attempt + 1 >= attempts) return;
    int delay = backoff_ms(attempt);
    spdlog::warn("{}: attempt {} answered {}; retrying in {} ms", route, attempt + 1, res.status,
                 delay);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  }
}

void Router::dispatch_pd(const std::string& route, const json& body, const Traits& traits,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         HttpResponse& res) {
  std::string why;
  auto prefill = pick(prefill_, *prefill_policy_, "prefill", traits.text, why);
  auto decode = prefill ? pick(decode_, *decode_policy_, "decode", traits.text, why) : nullptr;
  if (!prefill || !decode) {
    error_response(res, 503, "No available servers: " + why, "server_selection_failed");
    return;
  }
  json request = body;
  inject_bootstrap(request, *prefill, traits.batch_size);
  ClientRequest creq = worker_request("POST", route, args_.request_timeout_secs);
  creq.body = request.dump(-1, ' ', false, json::error_handler_t::replace);
  creq.headers = headers;
  auto guard = std::make_shared<LoadGuard>(WorkerList{prefill, decode});
  auto record = [prefill, decode](int status) {
    bool ok = is_success(status) || (status >= 400 && status < 500);
    prefill->breaker.record(ok);
    decode->breaker.record(ok);
  };

  // Both at once. As in SGLang's router the client gets decode's answer, once the prefill server
  // has answered too: a failed prefill is the client's error (at once, without waiting for a
  // decode server that can no longer get the KV cache: its request is closed).
  auto signal = std::make_shared<UpstreamSignal>();
  auto prefill_call = Upstream::start(prefill->base_url, creq, signal);
  auto decode_call = Upstream::start(decode->base_url, creq, signal);
  auto prefill_failed = [&] {
    if (!prefill_call->done()) return false;
    int s = prefill_call->wait_status();
    return s == 0 || !is_success(s) || !prefill_call->error().empty();
  };
  signal->wait([&] { return decode_call->has_status() || prefill_call->done(); });
  auto answer_prefill_error = [&] {
    decode_call->cancel();
    int s = prefill_call->wait_status();
    std::string body = prefill_call->wait_body();
    spdlog::error("prefill {} {}: {}", prefill->url, route,
                  s == 0 ? prefill_call->error() : "status " + std::to_string(s));
    if (s == 0 || is_success(s)) {
      error_response(
          res, 502,
          "Prefill server error: " + prefill_call->error() + ". This will cause decode timeout.");
      record(502);
    } else {
      error_response(res, s, fmt::format("Prefill server error ({}): {}", s, body));
      record(s);
    }
  };
  if (!decode_call->has_status() && prefill_failed()) return answer_prefill_error();
  int status = decode_call->wait_status();
  if (status == 0) {
    spdlog::error("decode {} {}: {}", decode->url, route, decode_call->error());
    error_response(res, 502, "Decode server error: " + decode_call->error());
    record(502);
    return;
  }
  if (!is_success(status)) {
    spdlog::error("decode {} {} answered {}", decode->url, route, status);
    decode_error_response(res, status, decode_call->wait_body(), traits.stream);
    record(status);
    return;
  }
  // A stream without logprobs passes decode's events on at once, as SGLang's router does: the
  // prefill's answer (which comes after its KV transfer) is only drained. Otherwise the
  // prefill's answer is read first (its input logprobs, its errors).
  const bool wait_for_prefill = traits.return_logprob || !traits.stream;
  json prefill_logprobs;
  if (wait_for_prefill) {
    std::string prefill_body = prefill_call->wait_body();
    if (prefill_failed()) return answer_prefill_error();
    if (traits.return_logprob) {
      json parsed = json::parse(prefill_body, nullptr, false);
      if (parsed.is_object() && parsed.contains("meta_info") && parsed["meta_info"].is_object()) {
        prefill_logprobs = parsed["meta_info"].value("input_token_logprobs", json());
      }
    }
  }
  record(status);
  if (traits.stream) {
    res.status = status;
    res.content_type = kSseContentType;
    auto merger = std::make_shared<SseLogprobMerger>(prefill_logprobs);
    bool merge = prefill_logprobs.is_array();
    res.stream = [decode_call, prefill_call, guard, merger, merge](StreamWriter& writer) {
      while (auto chunk = decode_call->next_chunk()) {
        if (!writer.write(merge ? merger->feed(*chunk) : *chunk)) {
          decode_call->cancel();
          return;  // the prefill call runs on to its end on its own thread
        }
      }
      if (merge) writer.write(merger->finish());
      if (std::string error = decode_call->error(); !error.empty()) {
        spdlog::error("decode stream: {}", error);
        writer.write(stream_error_event("Decode server error: " + error));
      }
      prefill_call->wait_body();  // the pair's load counts until both are done
    };
    return;
  }
  std::string text = decode_call->wait_body();
  if (!decode_call->error().empty()) {
    error_response(res, 500, "Failed to read response: " + decode_call->error());
    return;
  }
  if (prefill_logprobs.is_array()) {
    json parsed = json::parse(text, nullptr, false);
    if (merge_input_logprobs(prefill_logprobs, parsed)) text = dump_json(parsed);
  }
  res.status = status;
  res.content_type =
      decode_call->content_type().empty() ? "application/json" : decode_call->content_type();
  res.body = std::move(text);
}

void Router::dispatch_regular(const std::string& route, const std::string& body, const json& parsed,
                              const Traits& traits,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              HttpResponse& res) {
  std::string why;
  auto worker = pick(regular_, *policy_, "regular", traits.text, why);
  if (!worker) {
    error_response(res, 503, "No available servers: " + why, "server_selection_failed");
    return;
  }
  ClientRequest creq = worker_request("POST", route, args_.request_timeout_secs);
  if (worker->dp_rank >= 0) {
    json request = parsed;
    request["data_parallel_rank"] = worker->dp_rank;
    creq.body = request.dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    creq.body = body;
  }
  creq.headers = headers;
  auto guard = std::make_shared<LoadGuard>(WorkerList{worker});
  auto call = Upstream::start(worker->base_url, creq);
  int status = call->wait_status();
  if (status == 0) {
    spdlog::error("worker {} {}: {}", worker->url, route, call->error());
    error_response(res, 502, "Worker error: " + call->error());
    worker->breaker.record(false);
    return;
  }
  worker->breaker.record(is_success(status) || (status >= 400 && status < 500));
  if (is_success(status) && traits.stream) {
    res.status = status;
    res.content_type = kSseContentType;
    res.stream = [call, guard](StreamWriter& writer) {
      while (auto chunk = call->next_chunk()) {
        if (!writer.write(*chunk)) {
          call->cancel();
          return;
        }
      }
      if (std::string error = call->error(); !error.empty()) {
        writer.write(stream_error_event("Worker error: " + error));
      }
    };
    return;
  }
  std::string text = call->wait_body();
  if (!call->error().empty()) {
    error_response(res, 500, "Failed to read response: " + call->error());
    return;
  }
  pass_through(res, status, call->content_type(), std::move(text));
}

}  // namespace epserve
