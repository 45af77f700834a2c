#include "comm/world.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>

#include "core/error.h"

namespace epserve {
namespace {

using Clock = std::chrono::steady_clock;

#define EPS_UCX_CHECK(call, what)                                                           \
  do {                                                                                      \
    ucs_status_t status_ = (call);                                                          \
    EPS_CHECK(status_ == UCS_OK, "UCX failed to {}: {}", what, ucs_status_string(status_)); \
  } while (0)

// Shutdown barrier tags use a communicator id that no Communicator gets.
constexpr uint64_t kShutdownTag = 0xFFFFull << 48;
constexpr std::chrono::milliseconds kHeartbeatPeriod{1000};
// How long a rank that lost a peer waits for the store to name the job's first failure. The
// launcher (or the store, when a process vanishes) posts it within milliseconds; the bound is
// well under LaunchOptions::grace, so the rank still writes its own line before any SIGTERM.
constexpr std::chrono::milliseconds kFirstFailureWait{1000};

void peer_error_callback(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* a = static_cast<World::ErrorArg*>(arg);
  a->world->on_peer_error(a->rank, status);
}

// EPSERVE_UCX_PROGRESS_THREAD: 1 on, 0 off, unset: on when the job spans nodes.
bool want_progress_thread(const RankInfo& info) {
  if (info.world_size < 2) return false;
  if (const char* v = std::getenv("EPSERVE_UCX_PROGRESS_THREAD")) {
    EPS_CHECK(std::strcmp(v, "0") == 0 || std::strcmp(v, "1") == 0,
              "EPSERVE_UCX_PROGRESS_THREAD='{}' must be 0 or 1", v);
    return v[0] == '1';
  }
  return info.nnodes > 1;
}

std::string seconds_text(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000);
  return fmt::format("{:.3g}", ms.count() / 1000.0);
}

}  // namespace

World::World(const RankInfo& info, const CommOptions& options) : info_(info), options_(options) {
  if (const char* spin = std::getenv("EPSERVE_SPIN_US")) {
    options_.spin = std::chrono::microseconds(std::atoi(spin));
  } else if (options_.spin.count() < 0) {
    options_.spin = std::chrono::microseconds(info_.cpu_cores.empty() ? 50 : 1000);
  }
  node_of_.assign(info_.world_size, info_.node_rank);

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  params.estimated_num_eps = static_cast<size_t>(info_.world_size);
  ucp_config_t* config = nullptr;
  EPS_UCX_CHECK(ucp_config_read(nullptr, nullptr, &config),
                "read its configuration (UCX_* "
                "environment variables)");
  ucs_status_t st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  EPS_UCX_CHECK(st, "initialise");

  ucp_worker_params_t wparams{};
  wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  const bool progress_thread = want_progress_thread(info_);
  wparams.thread_mode = progress_thread ? UCS_THREAD_MODE_MULTI : UCS_THREAD_MODE_SINGLE;
  EPS_UCX_CHECK(ucp_worker_create(context_, &wparams, &worker_), "create a worker");
  if (progress_thread) {
    ucp_worker_attr_t wattr{};
    wattr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    EPS_UCX_CHECK(ucp_worker_query(worker_, &wattr), "query the worker");
    EPS_CHECK(wattr.thread_mode == UCS_THREAD_MODE_MULTI,
              "this UCX build has no thread-safe workers (configure --enable-mt), which the "
              "progress thread needs; set EPSERVE_UCX_PROGRESS_THREAD=0");
  }
  EPS_UCX_CHECK(ucp_worker_get_efd(worker_, &event_fd_), "get the worker's event fd");

  eps_.assign(info_.world_size, nullptr);
  error_args_.resize(info_.world_size);
  if (info_.world_size == 1) connect_self();
  // A launched single rank still watches the store and beats (its launcher may serve HTTP).
  if (info_.world_size == 1 && !info_.store_addr.empty()) start_abort_watcher();
  if (info_.world_size > 1) {
    EPS_CHECK(!info_.store_addr.empty(),
              "rank {} of {} has no rendezvous store address ({} is unset); start multi-rank runs "
              "through the launcher",
              info_.rank, info_.world_size, kEnvStoreAddr);
    store_ = std::make_unique<StoreClient>(info_.store_addr, info_.store_secret, options_.timeout);
    store_->register_liveness(fmt::format("rank {}", info_.rank));
    start_abort_watcher();
    try {
      connect_endpoints();
    } catch (...) {
      stop_abort_watcher();
      throw;
    }
    if (progress_thread) start_progress_thread();
  }
}

void World::start_progress_thread() {
  progress_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "eps-progress");  // for top -H and per-thread CPU figures
    while (!progress_stop_.load(std::memory_order_acquire)) {
      while (ucp_worker_progress(worker_) != 0) {
      }
      ucs_status_t st = ucp_worker_arm(worker_);
      if (st == UCS_ERR_BUSY) continue;  // events came in meanwhile
      if (st != UCS_OK) break;           // the rank thread's waits still progress
      // Woken by the transports' fds or by ucp_worker_signal (stop); the timeout only bounds
      // an event another thread consumed between arm and poll.
      pollfd pfd{event_fd_, POLLIN, 0};
      poll(&pfd, 1, 10);
    }
  });
}

void World::stop_progress_thread() {
  if (!progress_thread_.joinable()) return;
  progress_stop_.store(true, std::memory_order_release);
  ucp_worker_signal(worker_);
  progress_thread_.join();
}

void World::stop_abort_watcher() {
  closing_.store(true);
  if (watch_store_) {
    watch_store_->interrupt();
    if (watcher_.joinable()) watcher_.join();
  }
}

void World::start_abort_watcher() {
  watch_store_ =
      std::make_unique<StoreClient>(info_.store_addr, info_.store_secret, options_.timeout);
  watcher_ = std::thread([this] {
    // The same thread beats once a second: a stopped process falls silent, and node 0's
    // launcher names it (LaunchOptions::on_silent_ranks).
    const std::string label =
        fmt::format("rank {} (pid {}, node {})", info_.rank, getpid(), info_.node_rank);
    std::string message;
    try {
      while (true) {
        watch_store_->beat(label);
        auto value = watch_store_->wait(kAbortKey, kHeartbeatPeriod);
        if (value) {
          message = *value;
          break;
        }
      }
    } catch (const Error& e) {
      if (closing_.load()) return;
      message = e.what();
    }
    if (closing_.load()) return;
    std::lock_guard<std::mutex> lock(abort_mutex_);
    if (abort_message_.empty()) abort_message_ = message;
    store_reason_ = message;
    abort_flag_.store(true);
    store_reason_cv_.notify_all();
  });
}

void World::connect_endpoints() {
  ucp_address_t* address = nullptr;
  size_t address_len = 0;
  EPS_UCX_CHECK(ucp_worker_get_address(worker_, &address, &address_len), "get the worker address");
  std::string blob(sizeof(int32_t) + address_len, '\0');
  int32_t node = info_.node_rank;
  std::memcpy(blob.data(), &node, sizeof(node));
  std::memcpy(blob.data() + sizeof(node), address, address_len);
  ucp_worker_release_address(worker_, address);
  store_->set(fmt::format("epserve/ucx/{}", info_.rank), blob);

  connect_self();
  for (int p = 0; p < info_.world_size; ++p) {
    if (p == info_.rank) continue;
    std::string peer = store_->get(fmt::format("epserve/ucx/{}", p), options_.timeout,
                                   fmt::format("rank {}'s data-plane address", p));
    EPS_CHECK(peer.size() > sizeof(int32_t), "rank {} published an empty data-plane address", p);
    std::memcpy(&node, peer.data(), sizeof(node));
    node_of_[p] = node;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.address = reinterpret_cast<const ucp_address_t*>(peer.data() + sizeof(node));
    // Shared-memory transports cannot report peer failure in UCX 1.13 (PEER mode would force
    // TCP); a dead local peer is reported by the launcher and the store instead.
    if (node == info_.node_rank) {
      ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    } else {
      ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
      error_args_[p] = {this, p};
      ep.err_handler.cb = peer_error_callback;
      ep.err_handler.arg = &error_args_[p];
    }
    EPS_UCX_CHECK(ucp_ep_create(worker_, &ep, &eps_[p]),
                  fmt::format("create an endpoint to rank {}", p));
  }
}

void World::connect_self() {
  ucp_address_t* address = nullptr;
  size_t address_len = 0;
  EPS_UCX_CHECK(ucp_worker_get_address(worker_, &address, &address_len), "get the worker address");
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  ep.address = address;
  ucs_status_t st = ucp_ep_create(worker_, &ep, &eps_[info_.rank]);
  ucp_worker_release_address(worker_, address);
  EPS_UCX_CHECK(st, "create an endpoint to this rank itself");
}

void World::on_peer_error(int world_rank, ucs_status_t status) {
  if (closing_.load()) return;
  std::lock_guard<std::mutex> lock(abort_mutex_);
  if (abort_message_.empty()) {
    abort_message_ = fmt::format("lost the connection to rank {} (UCX: {})", world_rank,
                                 ucs_status_string(status));
  }
  abort_flag_.store(true);
}

void World::abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(abort_mutex_);
    if (abort_message_.empty()) abort_message_ = reason;
    abort_flag_.store(true);
  }
  if (store_) {
    try {
      store_->set_if_absent(kAbortKey, reason);
    } catch (const Error&) {
      // The store is gone; the launcher stops everything anyway.
    }
  }
}

int World::allocate_comm_ids(int n) {
  static int local_next = 1;
  if (!store_) {
    int first = local_next;
    local_next += n;
    return first;
  }
  return static_cast<int>(store_->add("epserve/comm_ids", n) - n + 1);
}

std::string World::describe(const WaitSpec& spec, const std::string& what) const {
  std::string context = spec.context && !spec.context->empty() ? " (" + *spec.context + ")" : "";
  return fmt::format("rank {}: {} in {}{}", info_.rank, what, spec.op, context);
}

void World::throw_aborted(const WaitSpec& spec) {
  std::string message;
  {
    std::lock_guard<std::mutex> lock(abort_mutex_);
    message = abort_message_;
  }
  int peer = spec.waiting_for ? spec.waiting_for() : -1;
  std::string what = peer >= 0 ? fmt::format("stopped while waiting for rank {}", peer) : "stopped";
  throw PeerFailure(
      fmt::format("{}: {}{}", describe(spec, what), message, first_failure_suffix(message)),
      __FILE__, __LINE__);
}

void World::throw_peer_lost(const WaitSpec& spec, int peer, ucs_status_t status) {
  std::string line = describe(spec, fmt::format("lost the connection to rank {} (UCX: {})", peer,
                                                ucs_status_string(status)));
  throw PeerFailure(line + first_failure_suffix(line), __FILE__, __LINE__);
}

std::string World::first_failure_suffix(const std::string& own) {
  if (!watch_store_) return "";
  std::unique_lock<std::mutex> lock(abort_mutex_);
  store_reason_cv_.wait_for(lock, kFirstFailureWait, [&] { return !store_reason_.empty(); });
  // Our own line (this rank posted it first), or one that already carries the reason, says
  // enough.
  if (store_reason_.empty() || own.find(store_reason_) != std::string::npos ||
      store_reason_.find(own) != std::string::npos) {
    return "";
  }
  return "; first failure: " + store_reason_;
}

void World::wait(const WaitSpec& spec, const std::function<bool()>& done) {
  auto start = Clock::now();
  auto spin_end = start + options_.spin;
  auto deadline = start + spec.timeout;
  while (true) {
    while (ucp_worker_progress(worker_) != 0) {
    }
    if (done()) return;
    check_alive(spec);
    auto now = Clock::now();
    if (now < spin_end) continue;
    if (now >= deadline) {
      int peer = spec.waiting_for ? spec.waiting_for() : -1;
      std::string what = fmt::format("timed out after {} s", seconds_text(spec.timeout));
      if (peer >= 0) what += fmt::format(" waiting for rank {}", peer);
      // The job cannot go on: tell everyone now rather than letting each rank time out.
      std::string line = describe(spec, what);
      if (spec.abort_on_timeout) abort(line);
      EPS_THROW("{}", line);
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    int slice = static_cast<int>(std::min<int64_t>(spec.max_block_ms, std::max<int64_t>(1, left)));
    if (spec.block) {
      spec.block(slice);
      continue;
    }
    ucs_status_t st = ucp_worker_arm(worker_);
    if (st == UCS_ERR_BUSY) continue;
    EPS_CHECK(st == UCS_OK, "UCX failed to arm the worker: {}", ucs_status_string(st));
    pollfd pfd{event_fd_, POLLIN, 0};
    poll(&pfd, 1, slice);
  }
}

void World::close_endpoints() {
  // A barrier first, so no rank closes while others still send to it.
  int n = info_.world_size, r = info_.rank;
  ucp_request_param_t param{};
  WaitSpec spec;
  spec.op = "the shutdown barrier";
  spec.timeout = options_.timeout;
  spec.abort_on_timeout = false;
  bool gave_up = false;
  auto wait_req = [&](void* req) {
    if (req == nullptr || UCS_PTR_IS_ERR(req)) return;
    if (!gave_up) {
      try {
        wait(spec, [&] { return ucp_request_check_status(req) != UCS_INPROGRESS; });
      } catch (const Error&) {
        gave_up = true;  // a rank that never arrives: close anyway
      }
    }
    if (ucp_request_check_status(req) == UCS_INPROGRESS) ucp_request_cancel(worker_, req);
    ucp_request_free(req);
  };
  char dummy = 0;
  for (int k = 1, round = 0; k < n; k <<= 1, ++round) {
    int to = (r + k) % n, from = (r - k + n) % n;
    uint64_t send_tag = kShutdownTag | (uint64_t(round) << 24) | uint64_t(r);
    uint64_t recv_tag = kShutdownTag | (uint64_t(round) << 24) | uint64_t(from);
    void* rreq = ucp_tag_recv_nbx(worker_, &dummy, 0, recv_tag, ~0ull, &param);
    void* sreq = ucp_tag_send_nbx(eps_[to], &dummy, 0, send_tag, &param);
    wait_req(sreq);
    wait_req(rreq);
  }
  closing_.store(true);
  std::vector<void*> closes;
  for (int p = 0; p < n; ++p) {
    if (!eps_[p]) continue;
    ucp_request_param_t cparam{};
    void* req = ucp_ep_close_nbx(eps_[p], &cparam);
    if (req && !UCS_PTR_IS_ERR(req)) closes.push_back(req);
    eps_[p] = nullptr;
  }
  spec.op = "closing the data plane";
  spec.timeout = std::min<std::chrono::milliseconds>(options_.timeout, std::chrono::seconds(10));
  gave_up = false;
  for (void* req : closes) wait_req(req);
}

World::~World() {
  // Destroyed while an exception unwinds: this rank is failing; skip the shutdown barrier (the
  // others would never join it) and the clean goodbye, so the store reports this rank as gone.
  bool failing = aborted() || std::uncaught_exceptions() > 0;
  // From here on only this thread drives the worker (the barrier and closes progress it).
  stop_progress_thread();
  if (!failing) {
    try {
      close_endpoints();
    } catch (...) {
    }
  }
  closing_.store(true);
  if (store_ && !failing) {
    try {
      store_->bye();
    } catch (const Error&) {
    }
  }
  stop_abort_watcher();
  if (failing) {
    // A peer is gone: puts to it may never complete, and their requests still pin registered
    // memory (UCX's registration cache asserts in ucp_cleanup, killing this rank with SIGABRT and
    // hiding the real cause). The process is ending anyway; leave the worker to the OS.
    return;
  }
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
}

}  // namespace epserve
