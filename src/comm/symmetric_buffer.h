// SymmetricBuffer: registered memory of the same size on every rank of a communicator, that other
// ranks write into directly (one-sided put) and then signal.
//
//   SymmetricBuffer buf(comm, bytes);          // collective: maps memory, exchanges keys
//   buf.put(peer, offset, src, n);              // write into peer's buffer
//   buf.signal(peer, step);                     // after the puts above: peer's slot[me] = step
//   buf.wait_signals(step, "dispatch");         // here: until every rank's slot[r] >= step
//
// Same-node peers map each other's buffers (UCX shared memory, ucp_rkey_ptr): a put is a memcpy
// and a signal a release store plus a futex wake, so a blocked receiver wakes at once. Other peers
// (another node, or UCX_TLS without shared memory) get ucp_put_nbx, and a signal is a fence plus
// an 8-byte put. Puts and signals do not wait for the transfer: the caller flushes later (the
// dispatchers in the wait that consumes the data), so a transfer can move under other work (see
// World's progress thread). Signal values must grow from one use to the next (a step counter);
// nothing is reset. The caller's protocol decides when a region may be rewritten (see the
// dispatchers). Destroy a buffer only when no rank will write into it any more.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "comm/communicator.h"

namespace epserve {

class SymmetricBuffer {
 public:
  // Collective over comm; `bytes` must be the same on every rank.
  SymmetricBuffer(Communicator& comm, size_t bytes);
  ~SymmetricBuffer();
  SymmetricBuffer(const SymmetricBuffer&) = delete;
  SymmetricBuffer& operator=(const SymmetricBuffer&) = delete;

  Communicator& comm() { return comm_; }
  // This rank's region; other ranks write into it.
  void* data() { return local_ + header_bytes_; }
  size_t size() const { return bytes_; }
  // Whether peer's region is mapped here (same node): puts to it are plain memcpy.
  bool is_direct(int peer) const { return peers_[peer].direct != nullptr; }
  bool all_direct() const { return all_direct_; }
  // peer's region, or nullptr when not direct.
  void* peer_data(int peer) {
    return peers_[peer].direct ? peers_[peer].direct + header_bytes_ : nullptr;
  }

  // Writes bytes from src into peer's region at offset. src must stay unchanged until flush().
  void put(int peer, size_t offset, const void* src, size_t bytes);
  // After every earlier put to peer: sets this rank's signal slot in peer's buffer to value.
  void signal(int peer, uint64_t value);
  // The latest signal value rank `from` wrote here.
  uint64_t signal_value(int from) const;
  // Waits until every rank of the communicator signalled at least value; `op` names the wait.
  void wait_signals(uint64_t value, const char* op);
  // Waits until earlier puts (and signals) no longer read their source buffers.
  void flush(const char* op = "put");
  // Whether puts or signals are still outstanding (flush() has work to do).
  bool has_pending() const { return !pending_.empty(); }

 private:
  struct Peer {
    ucp_rkey_h rkey = nullptr;
    uint64_t remote_base = 0;
    char* direct = nullptr;
  };
  std::atomic<uint64_t>* signal_slot(char* base, int rank) const {
    return reinterpret_cast<std::atomic<uint64_t>*>(base + size_t(rank) * 64);
  }
  std::atomic<uint32_t>* doorbell(char* base) const {
    return reinterpret_cast<std::atomic<uint32_t>*>(base + size_t(comm_.size()) * 64);
  }
  void track(void* request, int peer);

  Communicator& comm_;
  size_t bytes_ = 0;
  size_t header_bytes_ = 0;  // signal slots (64 B each) and the doorbell line
  ucp_mem_h memh_ = nullptr;
  char* local_ = nullptr;
  std::vector<Peer> peers_;
  bool all_direct_ = true;
  // Sources of remote signal puts since the last flush (a deque: elements never move).
  std::deque<uint64_t> signal_src_;
  std::vector<std::pair<void*, int>> pending_;  // outstanding UCX puts and their peers
};

}  // namespace epserve
