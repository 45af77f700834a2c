#include "comm/rma_agent.h"

#include <poll.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"

namespace epserve {

struct RmaAgent::Peer {
  ucp_ep_h ep = nullptr;
  std::map<std::string, ucp_rkey_h> rkeys;  // by packed key
  std::atomic<ucs_status_t> error{UCS_OK};
  // Flushes of writes that passed their deadline (with when they did): their puts may still
  // land at the peer.
  std::vector<std::pair<void*, std::chrono::steady_clock::time_point>> draining;
};

namespace {

void on_peer_error(void* arg, ucp_ep_h, ucs_status_t status) {
  static_cast<RmaAgent::Peer*>(arg)->error = status;
}

bool request_done(void* request, ucs_status_t& status) {
  if (request == nullptr) return true;
  if (UCS_PTR_IS_ERR(request)) {
    status = UCS_PTR_STATUS(request);
    return true;
  }
  ucs_status_t s = ucp_request_check_status(request);
  if (s == UCS_INPROGRESS) return false;
  if (s != UCS_OK) status = s;
  return true;
}

}  // namespace

RmaAgent::RmaAgent(const RmaAgentOptions& options) {
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  EPS_CHECK(st == UCS_OK, "UCX configuration: {}", ucs_status_string(st));
  if (!options.net_devices.empty()) {
    st = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
    if (st != UCS_OK) ucp_config_release(config);
    EPS_CHECK(st == UCS_OK, "UCX rejects the devices '{}': {}", options.net_devices,
              ucs_status_string(st));
  }
  // allocate_memory() promises zero-filled memory: UCX's default order also has "thp" and
  // "heap" (posix_memalign, malloc), which do not zero; every method left here maps fresh pages.
  st = ucp_config_modify(config, "ALLOC_PRIO", "md:sysv,md:posix,huge,mmap");
  if (st != UCS_OK) ucp_config_release(config);
  EPS_CHECK(st == UCS_OK, "UCX allocation methods: {}", ucs_status_string(st));
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  EPS_CHECK(st == UCS_OK, "UCX context for KV transfer: {}", ucs_status_string(st));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_MULTI;
  st = ucp_worker_create(context_, &wp, &worker_);
  EPS_CHECK(st == UCS_OK, "UCX worker for KV transfer: {}", ucs_status_string(st));
  st = ucp_worker_get_efd(worker_, &event_fd_);
  EPS_CHECK(st == UCS_OK, "UCX worker event fd: {}", ucs_status_string(st));
  ucp_address_t* address = nullptr;
  size_t length = 0;
  st = ucp_worker_get_address(worker_, &address, &length);
  EPS_CHECK(st == UCS_OK, "UCX worker address: {}", ucs_status_string(st));
  address_.assign(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(worker_, address);
  if (options.progress_thread) progress_ = std::thread([this] { progress_loop(); });
}

RmaAgent::~RmaAgent() {
  stop_ = true;
  if (progress_.joinable()) progress_.join();
  std::vector<std::string> names;
  for (auto& [name, peer] : peers_) names.push_back(name);
  for (const auto& name : names) drop(name);
  for (auto& [address, m] : regions_) ucp_mem_unmap(context_, m);
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
}

void RmaAgent::progress_loop() {
  while (!stop_) {
    while (ucp_worker_progress(worker_) != 0) {
    }
    // Emulated puts arrive as a stream of messages; sleeping between two of them (a wake-up
    // through the event fd, or the poll's timeout when one is missed) stalled transfers for
    // seconds. Poll for 2 ms after the last message before sleeping.
    bool more = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
    while (!more && !stop_ && std::chrono::steady_clock::now() < until) {
      more = ucp_worker_progress(worker_) != 0;
    }
    if (more) continue;
    if (ucp_worker_arm(worker_) != UCS_OK) continue;  // UCS_ERR_BUSY: more to do
    pollfd fd{event_fd_, POLLIN, 0};
    poll(&fd, 1, 50);
  }
}

std::string RmaAgent::pack_key(ucp_mem_h memh) {
  void* packed = nullptr;
  size_t packed_len = 0;
  ucs_status_t st = ucp_rkey_pack(context_, memh, &packed, &packed_len);
  if (st != UCS_OK) ucp_mem_unmap(context_, memh);
  EPS_CHECK(st == UCS_OK, "UCX could not pack a memory key: {}", ucs_status_string(st));
  std::string key(static_cast<const char*>(packed), packed_len);
  ucp_rkey_buffer_release(packed);
  return key;
}

std::string RmaAgent::register_memory(void* address, size_t bytes) {
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = address;
  params.length = bytes;
  ucp_mem_h memh = nullptr;
  ucs_status_t st = ucp_mem_map(context_, &params, &memh);
  EPS_CHECK(st == UCS_OK, "UCX could not register {} MiB of KV cache: {}", bytes >> 20,
            ucs_status_string(st));
  std::string key = pack_key(memh);
  std::lock_guard<std::mutex> lock(mutex_);
  if (!regions_.emplace(address, memh).second) {
    ucp_mem_unmap(context_, memh);
    EPS_THROW("UCX: the memory at {} is registered already", address);
  }
  return key;
}

void RmaAgent::free_memory(void* address) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = regions_.find(address);
  EPS_CHECK(it != regions_.end(), "UCX: no registered memory starts at {}", address);
  ucp_mem_unmap(context_, it->second);
  regions_.erase(it);
}

std::string RmaAgent::host_id() {
  static const std::string id = [] {
    std::string boot;
    std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
    char ns[128] = {0};
    ssize_t n = readlink("/proc/self/ns/ipc", ns, sizeof(ns) - 1);
    return boot + "/" + std::string(ns, n > 0 ? n : 0);
  }();
  return id;
}

std::string RmaAgent::allocate_memory(size_t bytes, void** address) {
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.address = nullptr;
  params.length = bytes;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  ucp_mem_h memh = nullptr;
  ucs_status_t st = ucp_mem_map(context_, &params, &memh);
  EPS_CHECK(st == UCS_OK, "UCX could not allocate {} MiB for the KV cache: {}", bytes >> 20,
            ucs_status_string(st));
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
  st = ucp_mem_query(memh, &attr);
  if (st != UCS_OK) ucp_mem_unmap(context_, memh);
  EPS_CHECK(st == UCS_OK, "UCX memory query: {}", ucs_status_string(st));
  std::string key = pack_key(memh);  // on failure the caller falls back to the heap
  {
    std::lock_guard<std::mutex> lock(mutex_);
    regions_[attr.address] = memh;  // unmapped by free_memory or the destructor
  }
  *address = attr.address;
  return key;
}

RmaAgent::Peer& RmaAgent::connect(const std::string& name, bool same_host) {
  auto it = peers_.find(name);
  if (it != peers_.end()) return *it->second;
  auto peer = std::make_unique<Peer>();
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(name.data());
  // Peer-failure handling excludes UCX 1.13's shared-memory transports (see the header).
  params.err_mode = same_host ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = on_peer_error;
  params.err_handler.arg = peer.get();
  ucs_status_t st = ucp_ep_create(worker_, &params, &peer->ep);
  EPS_CHECK(st == UCS_OK, "UCX could not reach the decode rank: {}", ucs_status_string(st));
  return *peers_.emplace(name, std::move(peer)).first->second;
}

void RmaAgent::drop(const std::string& name) {
  auto it = peers_.find(name);
  if (it == peers_.end()) return;
  Peer& peer = *it->second;
  for (auto& d : peer.draining) ucp_request_free(d.first);  // completed (canceled) by the close
  peer.draining.clear();
  for (auto& [key, rkey] : peer.rkeys) ucp_rkey_destroy(rkey);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  void* request = ucp_ep_close_nbx(peer.ep, &param);
  ucs_status_t status = UCS_OK;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!request_done(request, status) && std::chrono::steady_clock::now() < deadline) {
    ucp_worker_progress(worker_);
  }
  if (request != nullptr && !UCS_PTR_IS_ERR(request)) ucp_request_free(request);
  peers_.erase(it);
}

void RmaAgent::progress() {
  ucp_worker_progress(worker_);
}

std::vector<std::string> RmaAgent::draining(std::chrono::milliseconds give_up) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Emulated puts need the writer's progress too: a few milliseconds of it per call.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
  while (ucp_worker_progress(worker_) != 0 && std::chrono::steady_clock::now() < until) {
  }
  std::vector<std::string> gone, open;
  const auto now = std::chrono::steady_clock::now();
  for (auto& [name, peer] : peers_) {
    if (peer->draining.empty()) continue;
    ucs_status_t status = reap_drained(*peer);
    if (status != UCS_OK || peer->error != UCS_OK) {
      gone.push_back(name);  // the connection failed: nothing more of it can land
    } else if (!peer->draining.empty() && now - peer->draining.back().second > give_up) {
      // Given up (see the header) once the newest flush is that old: closing the endpoint ends
      // every flush on it. (write() refuses a draining peer, so there is only one.)
      gone.push_back(name);
    } else if (!peer->draining.empty()) {
      open.push_back(name);
    }
  }
  for (const auto& name : gone) drop(name);
  return open;
}

ucs_status_t RmaAgent::reap_drained(Peer& peer) {
  ucs_status_t status = UCS_OK;
  std::erase_if(peer.draining, [&](const auto& d) {
    if (!request_done(d.first, status)) return false;
    if (d.first != nullptr && !UCS_PTR_IS_ERR(d.first)) ucp_request_free(d.first);
    return true;
  });
  return status;
}

size_t RmaAgent::num_peers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peers_.size();
}

void RmaAgent::write(const std::string& name, const std::vector<std::string>& keys,
                     const std::vector<RmaPut>& puts, std::chrono::milliseconds timeout,
                     bool same_host) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Peer& peer = connect(name, same_host);
  // A peer that has not taken an earlier timed-out write is refused at once: another 30 s wait
  // behind it would hold every send queued after this one (runtime/kv_send_queue.h).
  if (!peer.draining.empty()) {
    ucp_worker_progress(worker_);
    if (reap_drained(peer) != UCS_OK || peer.error != UCS_OK) {
      drop(name);
      EPS_THROW("KV transfer: the decode rank's endpoint failed");
    }
    if (!peer.draining.empty()) {
      EPS_THROW(
          "KV transfer: the decode rank has not yet taken an earlier transfer that timed "
          "out (its puts may still land); not writing more to it until it has");
    }
  }
  std::vector<ucp_rkey_h> rkeys;
  for (const std::string& key : keys) {
    auto it = peer.rkeys.find(key);
    if (it == peer.rkeys.end()) {
      ucp_rkey_h rkey = nullptr;
      ucs_status_t st = ucp_ep_rkey_unpack(peer.ep, key.data(), &rkey);
      if (st != UCS_OK) {
        drop(name);
        EPS_THROW("UCX could not unpack the decode rank's memory key: {}", ucs_status_string(st));
      }
      it = peer.rkeys.emplace(key, rkey).first;
    }
    rkeys.push_back(it->second);
  }
  std::vector<void*> requests;
  ucs_status_t status = UCS_OK;
  auto fail = [&](const std::string& what) {
    for (void* r : requests) {
      if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
        ucp_request_cancel(worker_, r);
        ucp_request_free(r);
      }
    }
    drop(name);
    EPS_THROW("KV transfer: {}", what);
  };
  ucp_request_param_t param{};
  for (const RmaPut& put : puts) {
    EPS_CHECK(put.key >= 0 && put.key < static_cast<int>(rkeys.size()), "KV put with key {}",
              put.key);
    void* r = ucp_put_nbx(peer.ep, put.src, put.bytes, put.remote, rkeys[put.key], &param);
    if (UCS_PTR_IS_ERR(r))
      fail(fmt::format("a put failed: {}", ucs_status_string(UCS_PTR_STATUS(r))));
    if (r != nullptr) requests.push_back(r);
    // Keep the number in flight bounded: progress as we go.
    if (requests.size() % 256 == 0) ucp_worker_progress(worker_);
  }
  void* flush = ucp_ep_flush_nbx(peer.ep, &param);
  if (UCS_PTR_IS_ERR(flush)) {
    fail(fmt::format("flush failed: {}", ucs_status_string(UCS_PTR_STATUS(flush))));
  }
  if (flush != nullptr) requests.push_back(flush);
  while (true) {
    size_t open = 0;
    for (void*& r : requests) {
      if (r == nullptr) continue;
      if (request_done(r, status)) {
        ucp_request_free(r);
        r = nullptr;
      } else {
        ++open;
      }
    }
    if (status != UCS_OK || peer.error != UCS_OK) {
      ucs_status_t s = status != UCS_OK ? status : peer.error.load();
      fail(fmt::format("the decode rank's endpoint failed ({})", ucs_status_string(s)));
    }
    if (open == 0) return;
    if (std::chrono::steady_clock::now() > deadline) {
      // The peer is alive as far as UCX knows: the puts may still land (see the header). Keep
      // the endpoint and the flush; the put requests go on without their handles.
      for (void* r : requests) {
        if (r == nullptr) continue;
        if (r == flush) {
          peer.draining.emplace_back(r, std::chrono::steady_clock::now());
        } else {
          ucp_request_free(r);
        }
      }
      EPS_THROW("KV transfer: not complete at the decode rank after {} ms (transfer timeout)",
                timeout.count());
    }
    if (ucp_worker_progress(worker_) == 0) std::this_thread::yield();
  }
}

}  // namespace epserve
