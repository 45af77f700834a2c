// The frontend's link to the schedulers: one thread owns the ZeroMQ sockets (a PUSH per DP group,
// one PULL for everything the schedulers send back); HTTP handler threads only post messages and
// wait on their request's own queue.
//
// A RequestGroup is the work of one HTTP request: one GenerateInput per choice (n > 1, or a list
// of prompts), all sent to one DP group. Outputs for its rids land in its queue; when the group
// is destroyed (the handler finished, the client went away) every choice that has not finished is
// aborted at the scheduler so its KV pages are freed at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/control_plane.h"
#include "runtime/ipc.h"
#include "runtime/protocol.h"

namespace epserve {

class Metrics;

using Clock = std::chrono::steady_clock;

struct OutputEvent {
  size_t index = 0;  // the choice within the group
  TokenOutput output;
  Clock::time_point received;
  int error_status = 0;  // for a failed output: the HTTP status (0: the scheduler rejected it)
};

class Frontend;

class RequestGroup {
 public:
  ~RequestGroup();
  RequestGroup(const RequestGroup&) = delete;
  RequestGroup& operator=(const RequestGroup&) = delete;

  size_t size() const { return rids_.size(); }
  const std::string& rid(size_t index) const { return rids_[index]; }
  int dp_rank() const { return dp_rank_; }
  Clock::time_point created() const { return created_; }

  // Waits for the next output of any choice. False when `timeout` passed or the frontend is
  // shutting down (then every unfinished choice is reported finished with reason "abort").
  bool next(OutputEvent& event, std::chrono::milliseconds timeout);
  // Stops one choice now (a stop string matched, or its client went away); later outputs of it
  // are dropped.
  void abort(size_t index);
  bool finished(size_t index) const;
  bool all_finished() const;

 private:
  friend class Frontend;
  RequestGroup(Frontend& frontend, std::vector<std::string> rids, int dp_rank);
  void push(size_t index, TokenOutput output, Clock::time_point received);
  void fail_all(const std::string& reason);

  Frontend& frontend_;
  std::vector<std::string> rids_;
  int dp_rank_;
  Clock::time_point created_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<OutputEvent> queue_;
  std::vector<bool> finished_;
  std::vector<bool> got_first_;
  std::vector<Clock::time_point> last_output_;
};

struct FrontendOptions {
  std::string ipc_base;  // e.g. ipc:///tmp/epserve-<pid>
  int num_dp_groups = 1;
  std::string load_balance_method = "round_robin";  // round_robin, total_requests, total_tokens
  // DP groups led from other nodes (runtime/control_plane.h): every socket also binds here (e.g.
  // tcp://10.0.0.1:*), and all of them take only CURVE clients holding job_secret's key.
  std::string tcp_bind;
  std::string job_secret;
};

// What a scheduler said in its ready message.
struct SchedulerInfo {
  bool ready = false;
  nlohmann::json result;  // {"ready", "max_total_num_tokens", "kv_pages", "page_size", "layout"}
};

class Frontend {
 public:
  Frontend(FrontendOptions options, Metrics* metrics);
  ~Frontend();
  Frontend(const Frontend&) = delete;
  Frontend& operator=(const Frontend&) = delete;

  // Binds the sockets and starts the I/O thread. Throws epserve::Error naming the endpoint.
  void start();
  // After start() with a tcp_bind: the tcp:// endpoints the sockets got (published in the store
  // for leaders on other nodes).
  ControlPlaneEndpoints tcp_endpoints() const { return tcp_endpoints_; }
  // Aborts every request, tells the schedulers to shut down, stops the I/O thread.
  void shutdown();

  // Sends the inputs (rids must be unique); outputs arrive in the returned group. `dp_rank` >= 0
  // names the DP group (SGLang's data_parallel_rank; 400 when there is no such group), -1 lets
  // --load-balance-method pick it.
  std::shared_ptr<RequestGroup> submit(std::vector<GenerateInput> inputs, int dp_rank = -1);
  int num_dp_groups() const { return options_.num_dp_groups; }

  // Asks the schedulers to abort a request by rid ("" = every request); its handler then ends
  // with finish_reason "abort". False when no such request is in flight.
  bool abort_request(const std::string& rid);

  // Sends a control command to every DP group and collects the answers (one per group, in
  // dp_rank order; null where a group did not answer within `timeout`).
  std::vector<nlohmann::json> control(const std::string& command,
                                      std::chrono::milliseconds timeout);

  bool ready() const;
  // Ranks whose heartbeat has gone silent (comm/launcher.h: on_silent_ranks), by label.
  void set_silent_ranks(std::vector<std::string> ranks);
  // Why the server cannot serve now, for /health's 503; empty when it can (every group is ready
  // and every rank answers).
  std::string health_problem() const;
  // Blocks until every group is ready or `timeout` passes; false on timeout or shutdown.
  bool wait_ready(std::chrono::milliseconds timeout);
  std::vector<SchedulerInfo> scheduler_info() const;
  // Called on the I/O thread for ControlOutputs with id 0 that are not the ready message (e.g.
  // {"load_progress": {"done": n, "total": m}}).
  void set_status_callback(std::function<void(int dp_rank, const nlohmann::json&)> callback);

  // PD disaggregation (src/disagg): DisaggOutputs of the schedulers go to `handler` (on the I/O
  // thread: it must not block); post_disagg sends a DisaggInput to a DP group.
  void set_disagg_handler(std::function<void(int dp_rank, DisaggOutput)> handler);
  void post_disagg(int dp_rank, DisaggInput input) { post(dp_rank, std::move(input)); }
  // The request in flight with this bootstrap_room: its rid and DP group.
  std::optional<std::pair<std::string, int>> find_room(int64_t room) const;
  // A request with this bootstrap_room was refused before it reached a scheduler: the disagg
  // handler gets {"transfer": {"ok": false, "status", "error", "room"}}.
  void fail_room(int64_t room, int status, const std::string& error);

  size_t num_requests_in_flight() const;
  uint64_t next_seed();
  void seed_random(uint64_t seed);

 private:
  friend class RequestGroup;
  struct Route {
    std::weak_ptr<RequestGroup> group;
    size_t index = 0;
    int dp_rank = 0;
    int64_t tokens = 0;  // prompt + max new tokens, for total_tokens balancing
    int64_t room = -1;   // bootstrap_room (PD disaggregation)
  };
  struct PendingControl {
    std::vector<nlohmann::json> results;
    size_t answered = 0;
  };
  struct ControlSlot {
    uint64_t request = 0;  // the control() call
    int dp_rank = 0;
  };

  void post(int dp_rank, const SchedulerMessage& message);
  // Forgets a request (called by its group, possibly from the group's destructor, so the DP
  // group is passed in) and, unless it finished, aborts it at the scheduler.
  void unregister(const std::string& rid, int dp_rank, bool abort_at_scheduler);
  int pick_group(int64_t tokens);
  void io_loop();
  // Sends an empty wake-up message to every DP group that got nothing in this round.
  void wake_other_groups(const std::vector<char>& sent);
  // Tells the IO thread there is something to send.
  void wake();
  void handle(const std::string& bytes);
  void handle_outputs(OutputBatch batch);
  void handle_control(ControlOutput answer);
  void erase_route(std::unordered_map<std::string, Route>::iterator it);

  FrontendOptions options_;
  Metrics* metrics_;
  std::unique_ptr<IpcContext> context_;
  std::optional<IpcSocket> pull_;
  std::vector<IpcSocket> push_;          // one per DP group
  ControlPlaneEndpoints tcp_endpoints_;  // with options_.tcp_bind
  int wake_fd_ = -1;
  std::thread io_thread_;
  std::atomic<bool> stopping_{false};  // no new work; waits end
  std::atomic<bool> io_stop_{false};   // the I/O thread flushes its outbox and exits
  bool started_ = false;

  mutable std::mutex mutex_;  // everything below
  std::condition_variable cv_;
  std::deque<std::pair<int, std::string>> outbox_;
  std::unordered_map<std::string, Route> routes_;
  std::vector<int64_t> group_requests_, group_tokens_;
  std::vector<SchedulerInfo> info_;
  std::vector<std::string> silent_ranks_;
  std::unordered_map<uint64_t, PendingControl> controls_;  // by control() call
  std::unordered_map<uint64_t, ControlSlot> control_ids_;  // message id -> call and group
  uint64_t next_control_id_ = 1;
  uint64_t round_robin_ = 0;
  uint64_t seed_state_ = 0x9e3779b97f4a7c15ull;
  std::function<void(int, const nlohmann::json&)> status_callback_;
  std::function<void(int, DisaggOutput)> disagg_handler_;
  std::unordered_map<int64_t, std::string> rooms_;  // bootstrap_room -> rid
};

}  // namespace epserve
