#include "disagg/service.h"

#include <atomic>
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
// The same when most of the service's threads are taken: calls then come back sooner, so that
// calls queued behind them still refresh their rooms' leases well within kRoomLease (with 256
// threads about 5000 calls a second, each room's every N/5000 s).
constexpr auto kBusyPollWait = std::chrono::milliseconds(50);
constexpr int kServiceThreads = 256;
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
    http_.route("POST", "/kv/transfer", [this](const HttpRequest& req, HttpResponse& res) {
      Busy busy(active_calls_);
      transfer(req, res);
    });
    http_.route("POST", "/kv/cancel", [this](const HttpRequest& req, HttpResponse& res) {
      Busy busy(active_calls_);
      cancel(req, res);
    });
    http_.bind();
    thread_ = std::thread([this] { http_.serve(); });
    janitor_ = std::thread([this] { janitor(); });
    spdlog::info("PD disaggregation: bootstrap service on {}:{}", ctx.args.host, http_.port());
  }

  ~PrefillService() override {
    ctx_.frontend.set_disagg_handler({});
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    http_.stop();
    if (thread_.joinable()) thread_.join();
    if (janitor_.joinable()) janitor_.join();
  }

 private:
  // A room whose target this service handed to a scheduler.
  struct Room {
    std::string rid;
    int dp = 0;
    std::optional<json> result;  // the scheduler's {"ok", ...}
    bool drained = false;        // a result with "settled": false whose puts can no longer land
    bool cancel_posted = false;
    Clock::time_point since = Clock::now();
    Clock::time_point last_poll = Clock::now();  // the decode side's last call about it
  };

  static HttpServerOptions options(const ServerArgs& args) {
    HttpServerOptions o;
    o.host = args.host;
    o.port = args.disaggregation_bootstrap_port;
    o.threads = kServiceThreads;
    return o;
  }

  // Nothing more will be written for this room: it succeeded (flushed), failed before or
  // without puts in flight, or its timed-out puts have drained since.
  struct Busy {
    std::atomic<int>& calls;
    explicit Busy(std::atomic<int>& c) : calls(c) { ++calls; }
    ~Busy() { --calls; }
  };
  std::chrono::milliseconds poll_wait() const {
    return active_calls_.load() * 4 >= kServiceThreads * 3 ? kBusyPollWait : kPollWait;
  }

  static bool settled(const Room& r) {
    return r.result &&
           (r.result->value("ok", false) || r.result->value("settled", true) || r.drained);
  }

  void on_output(DisaggOutput out) {
    if (out.body.contains("drained")) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = rooms_.find(out.body.value("room", int64_t{-1}));
      if (it != rooms_.end() && it->second.rid == out.rid) it->second.drained = true;
      cv_.notify_all();
      return;
    }
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
    // A room whose decode server went away without an answer: its result (settled by then:
    // the agents give up draining after DisaggTimeouts::drain()) is dropped after a while.
    std::erase_if(rooms_, [&](const auto& r) {
      return now - r.second.last_poll > kKeepResult + timeouts_.drain() &&
             (settled(r.second) || !r.second.result);
    });
    std::erase_if(failed_, [&](const auto& f) { return now - f.second.second > kKeepResult; });
    std::erase_if(cancelled_, [&](const auto& c) { return now - c.second.at > kKeepResult; });
  }

  // The lease: a room's decode server asks about it at least every second (kPollWait) until it
  // has a settled answer. One that stopped asking (dead, or cut off) is cancelled here, so that
  // this server never starts writing into pages its decode server may have given up on
  // (DisaggTimeouts::lost_contact() counts on it).
  void janitor() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(500));
      if (stop_) break;
      const auto now = Clock::now();
      for (auto& [room, state] : rooms_) {
        if (state.result || state.cancel_posted ||
            now - state.last_poll < DisaggTimeouts::kRoomLease) {
          continue;
        }
        spdlog::warn(
            "PD disaggregation: the decode server stopped asking about room {}; "
            "cancelling its transfer",
            room);
        state.cancel_posted = true;
        ctx_.frontend.post_disagg(state.dp, DisaggInput{state.rid, {{"cancel", true}}});
      }
      // A room cancelled before its prefill request came here: the request, when it comes,
      // stops too (else it would hold its pages until the bootstrap timeout).
      std::vector<int64_t> waiting;
      for (const auto& [room, c] : cancelled_) {
        if (!c.request_stopped) waiting.push_back(room);
      }
      lock.unlock();
      std::vector<std::pair<int64_t, std::pair<std::string, int>>> found;
      for (int64_t room : waiting) {
        if (auto f = ctx_.frontend.find_room(room)) found.emplace_back(room, *f);
      }
      lock.lock();
      for (const auto& [room, f] : found) {
        auto c = cancelled_.find(room);
        if (c == cancelled_.end() || c->second.request_stopped) continue;
        c->second.request_stopped = true;
        ctx_.frontend.post_disagg(f.second, DisaggInput{f.first, {{"cancel", true}}});
      }
      expire();
    }
  }

  void answer_result(const Room& state, HttpResponse& res) {
    const json& result = *state.result;
    if (result.value("ok", false)) {
      res.json(200, result.dump());
      return;
    }
    int status = result.value("status", 502);
    json body = error_body(result.value("error", std::string("the KV transfer failed")), status);
    // Whether nothing more will be written (the decode side keeps its pages until then).
    body["settled"] = settled(state);
    res.json(status, body.dump());
  }

  void transfer(const HttpRequest& req, HttpResponse& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("room") || !body["room"].is_number_integer() ||
        !body.contains("target") || !body["target"].is_object()) {
      res.json(400, error_body("expected {\"room\": integer, \"target\": object}", 400).dump());
      return;
    }
    const int64_t room = body["room"].get<int64_t>();
    const auto deadline = Clock::now() + poll_wait();
    std::unique_lock<std::mutex> lock(mutex_);
    expire();
    if (cancelled_.count(room) != 0) {
      res.json(499, error_body("the decode server cancelled this room's transfer", 499).dump());
      return;
    }
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
      if (cancelled_.count(room) != 0 || rooms_.count(room) != 0) {
        lock.unlock();
        transfer(req, res);  // a cancel or another call for this room came meanwhile
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
      Room state;
      state.rid = found->first;
      state.dp = found->second;
      rooms_[room] = std::move(state);
      ctx_.frontend.post_disagg(found->second,
                                DisaggInput{found->first, {{"target", body["target"]}}});
    }
    rooms_[room].last_poll = Clock::now();
    cv_.wait_until(lock, deadline, [&] { return rooms_.count(room) == 0 || rooms_[room].result; });
    auto it = rooms_.find(room);
    if (it == rooms_.end() || !it->second.result) {
      res.json(202, json{{"pending", true}, {"waiting_for", "the KV transfer"}}.dump());
      return;
    }
    answer_result(it->second, res);
    if (settled(it->second)) rooms_.erase(it);
  }

  // POST /kv/cancel {"room"}: the decode server gives the room up (its request was aborted or
  // timed out, or its transfer failed with puts in flight). 200 {"settled": true} once nothing
  // more will be written into its pages: the room's target never reached a scheduler here (it
  // never will now), or its transfer has ended and drained; else 202 (ask again).
  void cancel(const HttpRequest& req, HttpResponse& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("room") || !body["room"].is_number_integer()) {
      res.json(400, error_body("expected {\"room\": integer}", 400).dump());
      return;
    }
    const int64_t room = body["room"].get<int64_t>();
    std::unique_lock<std::mutex> lock(mutex_);
    expire();
    auto it = rooms_.find(room);
    if (it == rooms_.end()) {
      const bool first = cancelled_.count(room) == 0;
      if (first) cancelled_[room] = Cancelled{Clock::now(), false};
      lock.unlock();
      // The prefill request itself, if it is here, stops and frees its pages; if it is not here
      // yet, the janitor stops it when it comes.
      if (auto found = ctx_.frontend.find_room(room)) {
        lock.lock();
        auto c = cancelled_.find(room);
        const bool post = c != cancelled_.end() && !c->second.request_stopped;
        if (post) c->second.request_stopped = true;
        lock.unlock();
        if (post) {
          ctx_.frontend.post_disagg(found->second, DisaggInput{found->first, {{"cancel", true}}});
        }
      }
      res.json(200, json{{"settled", true}}.dump());
      return;
    }
    Room& state = it->second;
    state.last_poll = Clock::now();
    if (!state.result && !state.cancel_posted) {
      state.cancel_posted = true;
      ctx_.frontend.post_disagg(state.dp, DisaggInput{state.rid, {{"cancel", true}}});
    }
    cv_.wait_until(lock, Clock::now() + poll_wait(), [&] {
      auto r = rooms_.find(room);
      return r == rooms_.end() || settled(r->second);
    });
    it = rooms_.find(room);
    if (it == rooms_.end() || settled(it->second)) {
      json answer = {{"settled", true}};
      if (it != rooms_.end()) {
        answer["ok"] = it->second.result->value("ok", false);
        rooms_.erase(it);
      }
      res.json(200, answer.dump());
      return;
    }
    res.json(202, json{{"pending", true},
                       {"waiting_for", it->second.result ? "the failed transfer's puts to drain"
                                                         : "the transfer to stop"}}
                      .dump());
  }

  ServerContext& ctx_;
  DisaggTimeouts timeouts_;
  HttpServer http_;
  std::thread thread_, janitor_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<int64_t, Room> rooms_;
  std::map<int64_t, std::pair<json, Clock::time_point>> failed_;
  struct Cancelled {
    Clock::time_point at;
    bool request_stopped = false;  // the prefill request was found here and told to stop
  };
  std::map<int64_t, Cancelled> cancelled_;  // rooms given up before their target came
  std::atomic<int> active_calls_{0};        // /kv/* calls being answered
};

// Decode: relays each reserved request to its prefill server and, when the request ends before
// its KV arrived, cancels the transfer there; the scheduler frees the pages only on a settled
// answer (see relay()).
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
    cv_.notify_all();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }

 private:
  struct Relay {
    bool cancel = false;  // the scheduler ended the request (guarded by mutex_)
  };

  void start(int dp, DisaggOutput out) {
    if (out.body.contains("cancel")) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = relays_.find(out.rid);
        if (it != relays_.end()) {
          it->second->cancel = true;
          cv_.notify_all();
          return;
        }
      }
      // No relay: it has already given the scheduler its final answer.
      ctx_.frontend.post_disagg(dp, DisaggInput{out.rid, {{"released", true}}});
      return;
    }
    if (!out.body.contains("slots")) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return;
    for (auto& t : done_) t.join();
    done_.clear();
    auto state = std::make_shared<Relay>();
    relays_[out.rid] = state;
    threads_.emplace_back([this, dp, state, out = std::move(out)] {
      relay(dp, out.rid, out.body, *state);
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = relays_.find(out.rid); it != relays_.end() && it->second == state) {
        relays_.erase(it);
      }
      auto self = std::find_if(threads_.begin(), threads_.end(), [](const std::thread& t) {
        return t.get_id() == std::this_thread::get_id();
      });
      if (self != threads_.end()) {
        done_.push_back(std::move(*self));
        threads_.erase(self);
      }
    });
  }

  // Asks the prefill server for the KV until it is there, fails, or the request ends here; in
  // the last two cases, unless the prefill side said nothing more will be written ("settled"),
  // tells the scheduler that the pages stay held ({"unsettled": true}) and asks POST /kv/cancel
  // until the prefill side answers that its transfer has stopped and its puts drained. Only then
  // does the scheduler get {"released"} and free the pages; or when the prefill server cannot be
  // reached for DisaggTimeouts::lost_contact() after the last call that may have reached it: by
  // then a live prefill server has cancelled the room itself (its lease) and ended any transfer
  // (the transfer timeout), and a dead one writes nothing. The residual risk: puts already in
  // the network when a prefill server was cut off, delivered after a partition longer than that
  // heals (TCP retransmits an orphaned connection's data for a while).
  void relay(int dp, const std::string& rid, const json& body, Relay& state) {
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
    std::optional<Clock::time_point> contact;  // the last call that may have reached it
    auto tell = [&](json message) {
      ctx_.frontend.post_disagg(dp, DisaggInput{rid, std::move(message)});
    };
    auto fail = [&](const std::string& error, int status, bool settled) {
      ctx_.metrics.kv_transfer_failed();
      spdlog::warn("request {}: {}", rid, error);
      json message = {{"error", error}, {"status", status}};
      if (!settled) message["unsettled"] = true;
      tell(std::move(message));
    };
    bool cancelling = false;
    while (!cancelling) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
        if (state.cancel) break;  // aborted or timed out here: cancel below
      }
      HttpClientResult r = http_call("POST", host, port, "/kv/transfer", request, 10.0);
      if (r.status != 0 || r.maybe_delivered) contact = Clock::now();
      if (r.status == 200) {
        // The prefill side has flushed its puts: whatever the answer holds, they are done.
        json answer = json::parse(r.body, nullptr, false);
        const bool ok = answer.is_object() && answer.contains("ok") && answer["ok"].is_boolean() &&
                        answer["ok"].get<bool>();
        if (!ok) {
          fail("the prefill server answered without the KV cache", 502, true);
          return;
        }
        // The types are checked here, the token's range by the scheduler.
        const int64_t bytes = answer.contains("bytes") && answer["bytes"].is_number_integer()
                                  ? answer["bytes"].get<int64_t>()
                                  : 0;
        ctx_.metrics.kv_transfer(bytes, seconds_between(started, Clock::now()));
        // The scheduler times the handoff from here to the request's first decode step.
        const double now =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        tell({{"received", answer}, {"arrived_at", now}});
        return;
      }
      if (r.status == 202) {
        if (Clock::now() > deadline) {
          fail(fmt::format("the KV cache did not arrive from the prefill server within "
                           "SGLANG_DISAGGREGATION_WAITING_TIMEOUT ({} s)",
                           timeouts_.waiting.count() / 1000.0),
               504, false);
          cancelling = true;
        }
        continue;
      }
      if (r.status == 0) {
        const std::string error =
            fmt::format("the prefill server's bootstrap service at {}:{} did not answer ({})", host,
                        port, r.error);
        fail(error, 502, !contact.has_value());  // never reached: nothing can be written
        if (!contact) return;
        cancelling = true;
        continue;
      }
      json e = json::parse(r.body, nullptr, false);
      const std::string error = e.is_object() && e.contains("message") && e["message"].is_string()
                                    ? e["message"].get<std::string>()
                                    : r.body;
      const bool settled = !(e.is_object() && e.contains("settled") && e["settled"].is_boolean() &&
                             !e["settled"].get<bool>());
      fail(error, r.status, settled);
      if (settled) return;
      cancelling = true;
    }
    const std::string cancel = json{{"room", body["bootstrap_room"]}}.dump();
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
      }
      HttpClientResult r = http_call("POST", host, port, "/kv/cancel", cancel, 10.0);
      if (r.status == 200) {
        tell({{"released", true}});
        return;
      }
      if (r.status == 202) {
        contact = Clock::now();
        continue;
      }
      if (!contact || Clock::now() - *contact > timeouts_.lost_contact()) {
        spdlog::warn(
            "request {}: the prefill server at {}:{} has not confirmed the cancelled transfer "
            "({}); freeing its KV pages after {} s without contact",
            rid, host, port, r.status == 0 ? r.error : std::to_string(r.status),
            timeouts_.lost_contact().count() / 1000.0);
        tell({{"released", true}});
        return;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_; });
    }
  }

  ServerContext& ctx_;
  DisaggTimeouts timeouts_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, std::shared_ptr<Relay>> relays_;
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
