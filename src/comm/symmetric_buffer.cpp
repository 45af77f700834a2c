#include "comm/symmetric_buffer.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <ctime>

#include "core/error.h"

namespace epserve {
namespace {

void futex_wait(std::atomic<uint32_t>* word, uint32_t seen, int timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

SymmetricBuffer::SymmetricBuffer(Communicator& comm, size_t bytes) : comm_(comm), bytes_(bytes) {
  const int n = comm_.size();
  header_bytes_ = size_t(n + 1) * 64;
  size_t total = header_bytes_ + bytes_;
  std::vector<uint64_t> sizes(n);
  uint64_t mine = bytes_;
  comm_.allgather(&mine, 8, sizes.data());
  for (int r = 0; r < n; ++r) {
    EPS_CHECK(sizes[r] == bytes_, "symmetric buffer: rank {} asked for {} bytes, this rank for {}",
              comm_.world_rank_of(r), sizes[r], bytes_);
  }

  World& world = comm_.world();
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.address = nullptr;
  params.length = total;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  ucs_status_t st = ucp_mem_map(world.context(), &params, &memh_);
  EPS_CHECK(st == UCS_OK, "UCX could not allocate a {} MB symmetric buffer: {}", total >> 20,
            ucs_status_string(st));
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
  ucp_mem_query(memh_, &attr);
  local_ = static_cast<char*>(attr.address);
  std::memset(local_, 0, header_bytes_);

  void* packed = nullptr;
  size_t packed_len = 0;
  st = ucp_rkey_pack(world.context(), memh_, &packed, &packed_len);
  EPS_CHECK(st == UCS_OK, "UCX could not pack a memory key: {}", ucs_status_string(st));
  std::string blob(8 + packed_len, '\0');
  uint64_t base = reinterpret_cast<uint64_t>(local_);
  std::memcpy(blob.data(), &base, 8);
  std::memcpy(blob.data() + 8, packed, packed_len);
  ucp_rkey_buffer_release(packed);

  std::vector<uint64_t> lens(n);
  uint64_t my_len = blob.size();
  comm_.allgather(&my_len, 8, lens.data());
  std::vector<size_t> recv_bytes(lens.begin(), lens.end());
  size_t all_len = 0;
  for (auto l : lens) all_len += l;
  std::string all(all_len, '\0');
  comm_.allgatherv(blob.data(), blob.size(), all.data(), recv_bytes);

  peers_.resize(n);
  size_t off = 0;
  for (int r = 0; r < n; ++r) {
    Peer& p = peers_[r];
    std::memcpy(&p.remote_base, all.data() + off, 8);
    if (r == comm_.rank()) {
      p.direct = local_;
    } else {
      st = ucp_ep_rkey_unpack(world.ep(comm_.world_rank_of(r)), all.data() + off + 8, &p.rkey);
      EPS_CHECK(st == UCS_OK, "UCX could not unpack rank {}'s memory key: {}",
                comm_.world_rank_of(r), ucs_status_string(st));
      void* ptr = nullptr;
      if (ucp_rkey_ptr(p.rkey, p.remote_base, &ptr) == UCS_OK) p.direct = static_cast<char*>(ptr);
    }
    all_direct_ &= p.direct != nullptr;
    off += lens[r];
  }
  comm_.barrier();
}

SymmetricBuffer::~SymmetricBuffer() {
  for (auto& [req, peer] : pending_) {
    if (!req) continue;
    ucp_request_cancel(comm_.world().worker(), req);
    ucp_request_free(req);
  }
  for (auto& p : peers_) {
    if (p.rkey) ucp_rkey_destroy(p.rkey);
  }
  if (memh_) ucp_mem_unmap(comm_.world().context(), memh_);
}

void SymmetricBuffer::track(void* request, int peer) {
  if (UCS_PTR_IS_ERR(request)) {
    comm_.world().throw_peer_lost(comm_.wait_spec("put"), comm_.world_rank_of(peer),
                                  UCS_PTR_STATUS(request));
  }
  if (request) pending_.push_back({request, peer});
}

void SymmetricBuffer::put(int peer, size_t offset, const void* src, size_t bytes) {
  EPS_CHECK(offset + bytes <= bytes_,
            "symmetric buffer put of {} bytes at {} overflows its {} bytes", bytes, offset, bytes_);
  if (bytes == 0) return;
  Peer& p = peers_[peer];
  if (p.direct) {
    std::memcpy(p.direct + header_bytes_ + offset, src, bytes);
    return;
  }
  ucp_request_param_t param{};
  track(ucp_put_nbx(comm_.world().ep(comm_.world_rank_of(peer)), src, bytes,
                    p.remote_base + header_bytes_ + offset, p.rkey, &param),
        peer);
}

void SymmetricBuffer::signal(int peer, uint64_t value) {
  Peer& p = peers_[peer];
  if (p.direct) {
    signal_slot(p.direct, comm_.rank())->store(value, std::memory_order_release);
    std::atomic<uint32_t>* bell = doorbell(p.direct);
    bell->fetch_add(1, std::memory_order_seq_cst);
    if (bell[1].load(std::memory_order_seq_cst)) futex_wake(bell);
    return;
  }
  World& world = comm_.world();
  ucs_status_t st = ucp_worker_fence(world.worker());
  EPS_CHECK(st == UCS_OK, "UCX fence failed: {}", ucs_status_string(st));
  uint64_t& src = signal_src_.emplace_back(value);
  ucp_request_param_t param{};
  track(ucp_put_nbx(world.ep(comm_.world_rank_of(peer)), &src, 8,
                    p.remote_base + size_t(comm_.rank()) * 64, p.rkey, &param),
        peer);
}

uint64_t SymmetricBuffer::signal_value(int from) const {
  return signal_slot(local_, from)->load(std::memory_order_acquire);
}

void SymmetricBuffer::wait_signals(uint64_t value, const char* op) {
  const int n = comm_.size();
  int next = 0;  // every rank below `next` has signalled
  auto done = [&] {
    while (next < n && signal_value(next) >= value) ++next;
    return next == n;
  };
  if (done()) return;
  WaitSpec spec = comm_.wait_spec(op);
  spec.waiting_for = [&] { return next < n ? comm_.world_rank_of(next) : -1; };
  if (all_direct_) {
    // Writers store, bump the doorbell, and wake us if we announced that we sleep.
    spec.block = [&](int slice_ms) {
      std::atomic<uint32_t>* bell = doorbell(local_);
      uint32_t seen = bell->load(std::memory_order_seq_cst);
      bell[1].store(1, std::memory_order_seq_cst);
      if (!done()) futex_wait(bell, seen, slice_ms);
      bell[1].store(0, std::memory_order_seq_cst);
    };
  } else {
    // Remote puts may land without waking the worker (RDMA): block in short slices.
    spec.max_block_ms = 1;
  }
  comm_.world().wait(spec, done);
}

void SymmetricBuffer::flush(const char* op) {
  if (pending_.empty()) {
    // Every signal's put completed in place (ucp_put_nbx returned no request): its source
    // value is no longer read, and the queue must not grow over a run of such epochs.
    signal_src_.clear();
    return;
  }
  WaitSpec spec = comm_.wait_spec(op);
  size_t first = 0;
  spec.waiting_for = [&] {
    return first < pending_.size() ? comm_.world_rank_of(pending_[first].second) : -1;
  };
  comm_.world().wait(spec, [&] {
    for (; first < pending_.size(); ++first) {
      void* req = pending_[first].first;
      ucs_status_t st = ucp_request_check_status(req);
      if (st == UCS_INPROGRESS) return false;
      ucp_request_free(req);
      pending_[first].first = nullptr;
      if (st != UCS_OK) {
        comm_.world().throw_peer_lost(spec, comm_.world_rank_of(pending_[first].second), st);
      }
    }
    return true;
  });
  pending_.clear();
  signal_src_.clear();
}

}  // namespace epserve
