#include "disagg/service.h"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "disagg/kv_agent.h"
#include "runtime/kv_transfer.h"
#include "server/errors.h"
#include "server/http.h"
#include "server/server_context.h"

namespace epserve {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// How long one bootstrap call waits before answering 202 (the decode side asks again).
constexpr auto kPollWait = std::chrono::milliseconds(1000);
// How long a prefill result nobody fetched, or a failed room, is kept.
constexpr auto kKeepResult = std::chrono::seconds(120);

json error_body(const std::string& message, int status) {
  return {{"object", "error"},
          {"message", message},
          {"type", status >= 500 ? "InternalServerError" : "BadRequestError"},
          {"param", nullptr},
          {"code", status}};
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Prefill: the bootstrap service.
class PrefillService : public ServerService {
 public:
  explicit PrefillService(ServerContext& ctx)
      : ctx_(ctx), timeouts_(DisaggTimeouts::from_env()), http_(options(ctx.args)) {
    ctx_.frontend.set_disagg_handler([this](int, DisaggOutput out) { on_output(std::move(out)); });
    http_.route("GET", "/route", [this](const HttpRequest&, HttpResponse& res) {
      json groups = json::array();
      for (const SchedulerInfo& s : ctx_.frontend.scheduler_info()) {
        groups.push_back({{"ready", s.ready},
                          {"page_size", s.result.value("page_size", 0)},
                          {"kv_ranks", s.result.value("kv_ranks", json::array())}});
      }
      res.json(200, json{{"disaggregation_mode", "prefill"},
                         {"transfer_backend", "ucx"},
                         {"dp_size", groups.size()},
                         {"groups", groups}}
                        .dump());
    });
    http_.route("POST", "/kv/transfer",
                [this](const HttpRequest& req, HttpResponse& res) { transfer(req, res); });
    http_.bind();
    thread_ = std::thread([this] { http_.serve(); });
    spdlog::info("PD disaggregation: bootstrap service on {}:{}", ctx.args.host, http_.port());
  }

  ~PrefillService() override {
    ctx_.frontend.set_disagg_handler({});
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Room {
    std::string rid;
    std::optional<json> result;  // the scheduler's {"ok", ...}
    Clock::time_point since = Clock::now();
  };

  static HttpServerOptions options(const ServerArgs& args) {
    HttpServerOptions o;
    o.host = args.host;
    o.port = args.disaggregation_bootstrap_port;
    o.threads = 256;
    return o;
  }

  void on_output(DisaggOutput out) {
    if (!out.body.contains("transfer")) return;
    const json& result = out.body["transfer"];
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [room, state] : rooms_) {
        if (state.rid == out.rid && !state.result) state.result = result;
      }
      if (!result.value("ok", false) && result.contains("room")) {
        int64_t room = result["room"].get<int64_t>();
        if (rooms_.count(room) == 0) failed_[room] = {result, Clock::now()};
      }
    }
    if (result.value("ok", false)) {
      ctx_.metrics.kv_transfer(result.value("bytes", int64_t{0}), result.value("seconds", 0.0));
    } else if (result.contains("status") && result["status"] == 502) {
      ctx_.metrics.kv_transfer_failed();
    }
    cv_.notify_all();
  }

  void expire() {
    auto now = Clock::now();
    std::erase_if(rooms_, [&](const auto& r) { return now - r.second.since > kKeepResult; });
    std::erase_if(failed_, [&](const auto& f) { return now - f.second.second > kKeepResult; });
  }

  void transfer(const HttpRequest& req, HttpResponse& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("room") || !body["room"].is_number_integer() ||
        !body.contains("target") || !body["target"].is_object()) {
      res.json(400, error_body("expected {\"room\": integer, \"target\": object}", 400).dump());
      return;
    }
    const int64_t room = body["room"].get<int64_t>();
    const auto deadline = Clock::now() + kPollWait;
    std::unique_lock<std::mutex> lock(mutex_);
    expire();
    if (rooms_.count(room) == 0) {
      // Wait (briefly) for the request with this room to reach this server.
      std::optional<std::pair<std::string, int>> found;
      while (true) {
        if (auto f = failed_.find(room); f != failed_.end()) {
          const json& r = f->second.first;
          int status = r.value("status", 500);
          res.json(status, error_body("the prefill request failed: " +
                                          r.value("error", std::string("unknown error")),
                                      status)
                               .dump());
          return;
        }
        lock.unlock();
        found = ctx_.frontend.find_room(room);
        lock.lock();
        if (found || Clock::now() > deadline) break;
        cv_.wait_for(lock, std::chrono::milliseconds(5));
      }
      if (!found) {
        res.json(202, json{{"pending", true}, {"waiting_for", "the prefill request"}}.dump());
        return;
      }
      // The handshake: can this prefill group fill that decode group?
      std::vector<SchedulerInfo> info = ctx_.frontend.scheduler_info();
      const json prefill_ranks = info.at(found->second).result.value("kv_ranks", json::array());
      const json& decode_ranks = body["target"].value("ranks", json::array());
      std::string problem = check_kv_layouts(prefill_ranks, decode_ranks);
      if (!problem.empty()) {
        res.json(400, error_body("PD handshake: " + problem, 400).dump());
        return;
      }
      rooms_[room] = Room{found->first, std::nullopt, Clock::now()};
      ctx_.frontend.post_disagg(found->second,
                                DisaggInput{found->first, {{"target", body["target"]}}});
    }
    cv_.wait_until(lock, deadline, [&] { return rooms_.count(room) == 0 || rooms_[room].result; });
    auto it = rooms_.find(room);
    if (it == rooms_.end() || !it->second.result) {
      res.json(202, json{{"pending", true}, {"waiting_for", "the KV transfer"}}.dump());
      return;
    }
    json result = std::move(*it->second.result);
    rooms_.erase(it);
    if (result.value("ok", false)) {
      res.json(200, result.dump());
    } else {
      int status = result.value("status", 502);
      res.json(
          status,
          error_body(result.value("error", std::string("the KV transfer failed")), status).dump());
    }
  }

  ServerContext& ctx_;
  DisaggTimeouts timeouts_;
  HttpServer http_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<int64_t, Room> rooms_;
  std::map<int64_t, std::pair<json, Clock::time_point>> failed_;
};

// Decode: relays each reserved request to its prefill server.
class DecodeService : public ServerService {
 public:
  explicit DecodeService(ServerContext& ctx) : ctx_(ctx), timeouts_(DisaggTimeouts::from_env()) {
    ctx_.frontend.set_disagg_handler(
        [this](int dp, DisaggOutput out) { start(dp, std::move(out)); });
  }

  ~DecodeService() override {
    ctx_.frontend.set_disagg_handler({});
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      threads = std::move(threads_);
      threads.insert(threads.end(), std::make_move_iterator(done_.begin()),
                     std::make_move_iterator(done_.end()));
      done_.clear();
    }
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void start(int dp, DisaggOutput out) {
    if (!out.body.contains("slots")) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return;
    for (auto& t : done_) t.join();
    done_.clear();
    threads_.emplace_back([this, dp, out = std::move(out)] {
      relay(dp, out.rid, out.body);
      std::lock_guard<std::mutex> lock(mutex_);
      auto self = std::find_if(threads_.begin(), threads_.end(), [](const std::thread& t) {
        return t.get_id() == std::this_thread::get_id();
      });
      if (self != threads_.end()) {
        done_.push_back(std::move(*self));
        threads_.erase(self);
      }
    });
  }

  void relay(int dp, const std::string& rid, const json& body) {
    const auto started = Clock::now();
    const auto deadline = started + timeouts_.waiting;
    const std::string host = body.value("bootstrap_host", std::string());
    const int port = body.value("bootstrap_port", 0) > 0 ? body.value("bootstrap_port", 0)
                                                         : ctx_.args.disaggregation_bootstrap_port;
    json target = {{"ranks", json::array()}, {"slots", body["slots"]}};
    std::vector<SchedulerInfo> info = ctx_.frontend.scheduler_info();
    if (dp >= 0 && dp < static_cast<int>(info.size())) {
      target["ranks"] = info[dp].result.value("kv_ranks", json::array());
    }
    const std::string request = json{{"room", body["bootstrap_room"]}, {"target", target}}.dump();
    json answer;
    std::string error;
    int status = 0;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
      }
      HttpClientResult r = http_call("POST", host, port, "/kv/transfer", request, 10.0);
      if (r.status == 200) {
        answer = json::parse(r.body, nullptr, false);
        break;
      }
      if (r.status == 0) {
        error = fmt::format("the prefill server's bootstrap service at {}:{} did not answer ({})",
                            host, port, r.error);
        status = 502;
        break;
      }
      if (r.status != 202) {
        json e = json::parse(r.body, nullptr, false);
        error = e.is_object() && e.contains("message") && e["message"].is_string()
                    ? e["message"].get<std::string>()
                    : r.body;
        status = r.status;
        break;
      }
      if (Clock::now() > deadline) {
        error = fmt::format(
            "the KV cache did not arrive from the prefill server within "
            "SGLANG_DISAGGREGATION_WAITING_TIMEOUT ({} s)",
            timeouts_.waiting.count() / 1000.0);
        status = 504;
        break;
      }
    }
    // The answer comes from whichever host the request named: its fields are checked here (the
    // types) and by the scheduler (the token's range) before anything uses them.
    const bool ok = answer.is_object() && answer.contains("ok") && answer["ok"].is_boolean() &&
                    answer["ok"].get<bool>();
    if (ok) {
      const int64_t bytes = answer.contains("bytes") && answer["bytes"].is_number_integer()
                                ? answer["bytes"].get<int64_t>()
                                : 0;
      ctx_.metrics.kv_transfer(bytes, seconds_between(started, Clock::now()));
      // The scheduler times the handoff from here to the request's first decode step.
      const double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      ctx_.frontend.post_disagg(dp, DisaggInput{rid, {{"received", answer}, {"arrived_at", now}}});
      return;
    }
    if (error.empty()) error = "the prefill server answered without the KV cache";
    if (status == 0) status = 502;
    ctx_.metrics.kv_transfer_failed();
    spdlog::warn("request {}: {}", rid, error);
    ctx_.frontend.post_disagg(dp, DisaggInput{rid, {{"error", error}, {"status", status}}});
  }

  ServerContext& ctx_;
  DisaggTimeouts timeouts_;
  std::mutex mutex_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::vector<std::thread> done_;
};

}  // namespace

std::unique_ptr<ServerService> make_disagg_service(ServerContext& ctx) {
  if (ctx.args.disaggregation_mode == "prefill") return std::make_unique<PrefillService>(ctx);
  if (ctx.args.disaggregation_mode == "decode") return std::make_unique<DecodeService>(ctx);
  return nullptr;
}

}  // namespace epserve
