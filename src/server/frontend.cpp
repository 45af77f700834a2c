#include "server/frontend.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/splitmix.h"
#include "server/errors.h"
#include "server/metrics.h"

namespace epserve {

Frontend::Frontend(FrontendOptions options, Metrics* metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      group_requests_(options_.num_dp_groups, 0),
      group_tokens_(options_.num_dp_groups, 0),
      info_(options_.num_dp_groups) {
  EPS_CHECK(options_.num_dp_groups >= 1, "frontend: {} DP groups", options_.num_dp_groups);
}

Frontend::~Frontend() {
  shutdown();
  if (wake_fd_ >= 0) close(wake_fd_);
  // After a start() that failed part-way: the sockets bound so far close (and remove their
  // socket files) before their context.
  push_.clear();
  pull_.reset();
}

void Frontend::start() {
  context_ = std::make_unique<IpcContext>();
  const bool tcp = !options_.tcp_bind.empty();
  if (tcp) context_->admit_job(options_.job_secret);
  // Each socket on this node's ipc:// path and, for leaders on other nodes, on tcp://.
  auto bind = [&](IpcSocket& socket, const std::string& ipc_endpoint) -> std::string {
    if (!tcp) {
      socket.bind(ipc_endpoint);
      return "";
    }
    socket.secure_as_server(options_.job_secret);
    socket.bind(ipc_endpoint);
    socket.bind(options_.tcp_bind);
    return socket.last_endpoint();
  };
  const ControlPlaneEndpoints local =
      ControlPlaneEndpoints::ipc(options_.ipc_base, options_.num_dp_groups);
  pull_.emplace(*context_, IpcSocket::Kind::kPull);
  tcp_endpoints_.out = bind(*pull_, local.out);
  for (int g = 0; g < options_.num_dp_groups; ++g) {
    push_.emplace_back(*context_, IpcSocket::Kind::kPush);
    tcp_endpoints_.in.push_back(bind(push_.back(), local.in[g]));
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  EPS_CHECK(wake_fd_ >= 0, "eventfd: {}", std::strerror(errno));
  started_ = true;
  io_thread_ = std::thread([this] { io_loop(); });
}

void Frontend::shutdown() {
  if (!started_ || stopping_.exchange(true)) return;
  std::vector<std::shared_ptr<RequestGroup>> groups;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [rid, route] : routes_) {
      if (auto g = route.group.lock()) groups.push_back(std::move(g));
    }
    routes_.clear();
    rooms_.clear();
    for (int g = 0; g < options_.num_dp_groups; ++g) {
      outbox_.emplace_back(g, encode(AbortInput{""}));
      outbox_.emplace_back(g, encode(ControlInput{"shutdown", next_control_id_++}));
    }
  }
  for (auto& g : groups) g->fail_all("the server is shutting down");
  cv_.notify_all();
  io_stop_ = true;
  wake();
  if (io_thread_.joinable()) io_thread_.join();
  push_.clear();  // closing removes the ipc:// socket files
  pull_.reset();
  context_.reset();
  // wake_fd_ stays open until the destructor: HTTP handlers may still post until the HTTP
  // server has stopped, and a closed descriptor's number could by then be another client's.
}

void Frontend::wake() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

std::shared_ptr<RequestGroup> Frontend::submit(std::vector<GenerateInput> inputs, int dp_rank) {
  EPS_CHECK(!inputs.empty(), "frontend: submit without inputs");
  if (dp_rank >= options_.num_dp_groups) {
    throw ApiError(
        400,
        fmt::format("data_parallel_rank must be less than dp_size: {}", options_.num_dp_groups),
        "data_parallel_rank");
  }
  if (stopping_) throw ApiError(503, "the server is shutting down");
  int64_t tokens = 0;
  std::vector<std::string> rids;
  for (const auto& in : inputs) {
    tokens += static_cast<int64_t>(in.input_ids.size()) + in.max_new_tokens;
    rids.push_back(in.rid);
  }
  std::shared_ptr<RequestGroup> group;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw ApiError(503, "the server is shutting down");
    for (const SchedulerInfo& s : info_) {
      if (!s.ready)
        throw ApiError(503,
                       "the model is still loading; /health answers 200 when "
                       "the server is ready");
    }
    for (size_t i = 0; i < rids.size(); ++i) {
      if (routes_.count(rids[i]) != 0 ||
          std::count(rids.begin(), rids.begin() + static_cast<std::ptrdiff_t>(i), rids[i])) {
        throw ApiError(400, "rid '" + rids[i] + "' is already in use", "rid");
      }
      // PD disaggregation: a bootstrap_room names one request on its prefill server (the decode
      // server's KV target is matched to it by room), so a second live request with the same
      // room would take the first one's KV, or give it to the wrong decode server. SGLang keys
      // its transfer state by room without a check (the router draws rooms at random from 63
      // bits); we refuse the second request instead.
      const int64_t room = inputs[i].bootstrap_room;
      bool twice = false;
      for (size_t j = 0; j < i; ++j) twice = twice || inputs[j].bootstrap_room == room;
      if (room >= 0 && (rooms_.count(room) != 0 || twice)) {
        throw ApiError(409,
                       fmt::format("bootstrap_room {} is already in use by a request in flight on "
                                   "this server; give each request a room of its own",
                                   room),
                       "bootstrap_room");
      }
    }
    int dp = dp_rank >= 0 ? dp_rank : pick_group(tokens);
    group.reset(new RequestGroup(*this, rids, dp));
    for (size_t i = 0; i < inputs.size(); ++i) {
      int64_t t = static_cast<int64_t>(inputs[i].input_ids.size()) + inputs[i].max_new_tokens;
      routes_[rids[i]] = Route{group, i, dp, t, inputs[i].bootstrap_room};
      if (inputs[i].bootstrap_room >= 0) rooms_[inputs[i].bootstrap_room] = rids[i];
      group_requests_[dp] += 1;
      group_tokens_[dp] += t;
      outbox_.emplace_back(dp, encode(inputs[i]));
    }
  }
  wake();
  return group;
}

int Frontend::pick_group(int64_t tokens) {
  int n = options_.num_dp_groups;
  if (n == 1) return 0;
  if (options_.load_balance_method == "total_requests") {
    return static_cast<int>(std::min_element(group_requests_.begin(), group_requests_.end()) -
                            group_requests_.begin());
  }
  if (options_.load_balance_method == "total_tokens") {
    return static_cast<int>(std::min_element(group_tokens_.begin(), group_tokens_.end()) -
                            group_tokens_.begin());
  }
  (void)tokens;
  return static_cast<int>(round_robin_++ % static_cast<uint64_t>(n));
}

void Frontend::post(int dp_rank, const SchedulerMessage& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    outbox_.emplace_back(dp_rank, encode(message));
  }
  wake();
}

void Frontend::unregister(const std::string& rid, int dp_rank, bool abort_at_scheduler) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = routes_.find(rid);
    if (it == routes_.end()) return;
    (void)dp_rank;
    erase_route(it);
  }
  if (abort_at_scheduler && !stopping_) post(dp_rank, AbortInput{rid});
}

bool Frontend::abort_request(const std::string& rid) {
  if (rid.empty()) {
    for (int g = 0; g < options_.num_dp_groups; ++g) post(g, AbortInput{""});
    return true;
  }
  int dp = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = routes_.find(rid);
    if (it == routes_.end()) return false;
    dp = it->second.dp_rank;
  }
  post(dp, AbortInput{rid});
  return true;
}

std::vector<nlohmann::json> Frontend::control(const std::string& command,
                                              std::chrono::milliseconds timeout) {
  // Each group gets its own message id, so the answers need not name their group.
  uint64_t call;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    call = next_control_id_;
    controls_[call].results.assign(options_.num_dp_groups, nullptr);
    for (int g = 0; g < options_.num_dp_groups; ++g) {
      uint64_t id = next_control_id_++;
      control_ids_[id] = ControlSlot{call, g};
      outbox_.emplace_back(g, encode(ControlInput{command, id}));
    }
  }
  wake();
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, timeout, [&] {
    return stopping_ || controls_[call].answered >= static_cast<size_t>(options_.num_dp_groups);
  });
  std::vector<nlohmann::json> results = std::move(controls_[call].results);
  controls_.erase(call);
  std::erase_if(control_ids_, [call](const auto& item) { return item.second.request == call; });
  return results;
}

bool Frontend::ready() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::all_of(info_.begin(), info_.end(), [](const SchedulerInfo& s) { return s.ready; });
}

bool Frontend::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] {
    return stopping_ ||
           std::all_of(info_.begin(), info_.end(), [](const SchedulerInfo& s) { return s.ready; });
  }) && !stopping_;
}

void Frontend::set_silent_ranks(std::vector<std::string> ranks) {
  std::lock_guard<std::mutex> lock(mutex_);
  silent_ranks_ = std::move(ranks);
}

std::string Frontend::health_problem() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!silent_ranks_.empty()) {
    std::string names;
    for (const auto& r : silent_ranks_) names += (names.empty() ? "" : ", ") + r;
    return fmt::format(
        "{} stopped answering: its process is stopped or frozen, or its node unreachable", names);
  }
  for (const SchedulerInfo& s : info_) {
    if (!s.ready) return "the model is still loading";
  }
  return "";
}

std::vector<SchedulerInfo> Frontend::scheduler_info() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return info_;
}

void Frontend::set_status_callback(std::function<void(int, const nlohmann::json&)> callback) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_callback_ = std::move(callback);
}

size_t Frontend::num_requests_in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return routes_.size();
}

void Frontend::seed_random(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  seed_state_ = seed;
}

uint64_t Frontend::next_seed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return splitmix64_next(seed_state_) & 0x7fffffffffffffffULL;
}

void Frontend::erase_route(std::unordered_map<std::string, Route>::iterator it) {
  const Route& route = it->second;
  group_requests_[route.dp_rank] -= 1;
  group_tokens_[route.dp_rank] -= route.tokens;
  if (route.room >= 0) {
    auto room = rooms_.find(route.room);
    if (room != rooms_.end() && room->second == it->first) rooms_.erase(room);
  }
  routes_.erase(it);
}

void Frontend::set_disagg_handler(std::function<void(int, DisaggOutput)> handler) {
  std::lock_guard<std::mutex> lock(mutex_);
  disagg_handler_ = std::move(handler);
}

std::optional<std::pair<std::string, int>> Frontend::find_room(int64_t room) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return std::nullopt;
  auto route = routes_.find(it->second);
  if (route == routes_.end()) return std::nullopt;
  return std::make_pair(it->second, route->second.dp_rank);
}

void Frontend::fail_room(int64_t room, int status, const std::string& error) {
  std::function<void(int, DisaggOutput)> handler;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A live request holds this room (the refused one was its duplicate): not a failure of it.
    if (rooms_.count(room) != 0) return;
    handler = disagg_handler_;
  }
  if (handler) {
    handler(
        0, DisaggOutput{"",
                        {{"transfer",
                          {{"ok", false}, {"status", status}, {"error", error}, {"room", room}}}}});
  }
}

void Frontend::handle(const std::string& bytes) {
  FrontendMessage message = decode_frontend_message(bytes);
  if (auto* batch = std::get_if<OutputBatch>(&message)) {
    handle_outputs(std::move(*batch));
  } else if (auto* disagg = std::get_if<DisaggOutput>(&message)) {
    std::function<void(int, DisaggOutput)> handler;
    // The group is the sender's own (DisaggOutput::dp_rank), never looked up by rid: a decode
    // request aborted while its pages were being reserved is gone from routes_ by now, and its
    // slots must still go out with (and be released by) the group that holds them.
    const int dp = disagg->dp_rank;
    if (dp < 0 || dp >= options_.num_dp_groups) {
      spdlog::warn("frontend: a KV transfer message from unknown DP group {}", dp);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      handler = disagg_handler_;
    }
    if (handler) handler(dp, std::move(*disagg));
  } else {
    handle_control(std::get<ControlOutput>(std::move(message)));
  }
}

void Frontend::handle_outputs(OutputBatch batch) {
  Clock::time_point now = Clock::now();
  for (TokenOutput& out : batch.outputs) {
    std::shared_ptr<RequestGroup> group;
    size_t index = 0;
    int orphan_dp = -1;  // the group is being destroyed: abort the request here
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = routes_.find(out.rid);
      if (it == routes_.end()) continue;  // aborted or unknown: dropped
      group = it->second.group.lock();
      index = it->second.index;
      if (out.finished || group == nullptr) {
        if (group == nullptr && !out.finished) orphan_dp = it->second.dp_rank;
        erase_route(it);
      }
    }
    const std::string rid = out.rid;
    if (group != nullptr) group->push(index, std::move(out), now);
    if (orphan_dp >= 0) post(orphan_dp, AbortInput{rid});
  }
}

void Frontend::handle_control(ControlOutput answer) {
  const uint64_t id = answer.id;
  nlohmann::json result = std::move(answer.result);
  std::function<void(int, const nlohmann::json&)> callback;
  int dp = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (id == 0) {
      dp = result.is_object() ? result.value("dp_rank", 0) : 0;
      if (dp < 0 || dp >= options_.num_dp_groups) {
        spdlog::warn("frontend: a message from unknown DP group {}", dp);
        return;
      }
      if (result.is_object() && result.value("ready", false)) {
        info_[dp].ready = true;
        info_[dp].result = result;
      } else {
        callback = status_callback_;
      }
    } else {
      auto slot = control_ids_.find(id);
      if (slot == control_ids_.end()) return;  // an answer nobody waits for any more
      auto call = controls_.find(slot->second.request);
      if (call != controls_.end() && call->second.results[slot->second.dp_rank].is_null()) {
        call->second.results[slot->second.dp_rank] = std::move(result);
        call->second.answered += 1;
      }
      control_ids_.erase(slot);
    }
  }
  cv_.notify_all();
  if (callback) callback(dp, result);
}

void Frontend::wake_other_groups(const std::vector<char>& sent) {
  // Under DP attention every group joins each step, so an idle group that sleeps in its poll
  // delays the group that just got work; an empty message ends that sleep at once.
  if (std::count(sent.begin(), sent.end(), 1) == 0) return;
  for (size_t g = 0; g < sent.size(); ++g) {
    if (sent[g]) continue;
    try {
      (void)push_[g].send(std::string(), /*wait=*/false);  // not connected yet: nobody to wake
    } catch (const std::exception&) {
      // A group that cannot be reached gets its error with its next real message.
    }
  }
}

void Frontend::io_loop() {
  bool backlog = false;
  auto stop_deadline = Clock::time_point::max();
  while (true) {
    if (io_stop_ && stop_deadline == Clock::time_point::max()) {
      stop_deadline = Clock::now() + std::chrono::seconds(1);
    }
    if (Clock::now() > stop_deadline) break;
    IpcReady ready = ipc_poll(*pull_, wake_fd_, std::chrono::milliseconds(backlog ? 5 : 100));
    if (ready.fd) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof(count));
    }
    // Send what handlers posted; a group whose scheduler is not connected yet keeps its messages.
    {
      std::unique_lock<std::mutex> lock(mutex_);
      std::deque<std::pair<int, std::string>> kept;
      std::vector<char> sent(push_.size(), 0);
      while (!outbox_.empty()) {
        auto item = std::move(outbox_.front());
        outbox_.pop_front();
        try {
          if (push_[item.first].send(item.second, /*wait=*/false)) {
            sent[item.first] = 1;
          } else {
            kept.push_back(std::move(item));
          }
        } catch (const std::exception& e) {
          spdlog::error("frontend: dropped a message to DP group {}: {}", item.first, e.what());
        }
      }
      wake_other_groups(sent);
      backlog = !kept.empty();
      outbox_ = std::move(kept);
      if (io_stop_ && !backlog) break;
    }
    if (ready.socket) {
      while (std::optional<std::string> bytes = pull_->receive()) {
        try {
          handle(*bytes);
        } catch (const std::exception& e) {
          spdlog::error("frontend: dropped a scheduler message: {}", e.what());
        }
      }
    }
  }
}

}  // namespace epserve
