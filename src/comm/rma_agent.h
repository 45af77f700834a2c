// One-sided writes between the rank processes of two separate servers (PD disaggregation, see
// src/disagg): an RmaAgent is a UCX context and worker of its own, apart from the job's World.
// The receiving side registers memory (register_memory) and hands its worker address and the
// packed keys to the writer by any channel; the writer's write() puts straight into that memory
// and returns once the data is complete at the receiver (ucp_ep_flush), or throws.
//
//   receiver: RmaAgent agent({.progress_thread = true});  key = agent.register_memory(p, n);
//   writer:   agent.write(receiver_address, {key}, {{src, remote_addr, bytes, 0}}, timeout);
//
// Without hardware RMA (TCP, or shared memory into memory UCX did not allocate) UCX emulates puts
// with messages that the receiver's worker must progress: a receiver runs a progress thread,
// which polls for a while after each message before it sleeps. A write whose endpoint fails
// force-closes it (the next write to that peer reconnects): the connection is gone, so none of
// its puts can land any more. A write that passes its deadline cannot know that: its puts may
// sit in transport buffers (TCP, a shared-memory ring) and land whenever the receiver
// progresses again. It keeps the endpoint and its flush open instead ("draining"), and
// draining() lists a peer until every such flush has completed (all those puts are at the peer) or
// its endpoint failed (none can land any more): until then the receiver must not reuse the memory
// those puts were aimed at.
//
// Endpoints to a peer on another host ask UCX for peer-failure handling; to a peer on the same
// host (same host_id()) they do not: UCX 1.13's shared-memory transports lack peer-failure
// support, so with it UCX would carry the puts over TCP loopback (about 7x slower, see
// docs/benchmarks.md); a dead local peer then shows as the write's timeout.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace epserve {

struct RmaAgentOptions {
  // UCX_NET_DEVICES for this agent only (e.g. "mlx5_0:1"); empty: UCX's default (all).
  std::string net_devices;
  bool progress_thread = false;  // a receiver: progress the worker on a thread of its own
};

struct RmaPut {
  const void* src = nullptr;
  uint64_t remote = 0;  // address in the receiver's registered memory
  size_t bytes = 0;
  int key = 0;  // index into write()'s keys
};

class RmaAgent {
 public:
  explicit RmaAgent(const RmaAgentOptions& options);
  ~RmaAgent();
  RmaAgent(const RmaAgent&) = delete;
  RmaAgent& operator=(const RmaAgent&) = delete;

  // Registers [address, address + bytes) for peers to write into; returns the packed key.
  std::string register_memory(void* address, size_t bytes);
  // Allocates `bytes` through UCX (ucp_mem_map with UCP_MEM_MAP_ALLOCATE), registered for peers
  // to write into; sets *address and returns the packed key. The memory is zero-filled and
  // page aligned (the agent's context allows only UCX's allocation methods that give fresh
  // mappings: SysV or POSIX shared memory, huge pages, mmap), and lives until free_memory() or
  // the agent's end. On one host UCX's shared-memory transports map it and write it directly,
  // where register_memory()'s memory takes emulated puts (docs/benchmarks.md).
  std::string allocate_memory(size_t bytes, void** address);
  // Unregisters (and, if allocate_memory() made it, frees) the region starting at `address`.
  void free_memory(void* address);
  // This worker's address (binary), for peers' write().
  const std::string& address() const { return address_; }
  // Puts into the peer and waits until the data is at the peer. Throws epserve::Error naming
  // what failed (the peer's endpoint failed or timed out: UCX's status, or "timed out after").
  // `same_host`: the peer's host_id() equals ours (decided when the endpoint is first created).
  void write(const std::string& peer, const std::vector<std::string>& keys,
             const std::vector<RmaPut>& puts, std::chrono::milliseconds timeout,
             bool same_host = false);
  // Peers (addresses) whose timed-out writes may still land (see above); progresses the worker.
  // A peer whose newest draining flush is older than `give_up` is force-closed and no longer
  // listed (its leftover puts can then only land if the receiver, stalled all that time,
  // resumes: the residual risk). A write to a peer still draining is refused at once.
  std::vector<std::string> draining(std::chrono::milliseconds give_up);
  // One round of progress on the worker (a receiver without a progress thread; tests).
  void progress();
  // This host and IPC namespace (boot id and namespace inode): equal ids share memory.
  static std::string host_id();
  // Peers with an open endpoint (for tests).
  size_t num_peers() const;

  struct Peer;

 private:
  // The packed remote key of memh; unmaps memh and throws when UCX cannot pack it.
  std::string pack_key(ucp_mem_h memh);
  // Frees the peer's draining flushes that have completed; returns a failure status among them.
  ucs_status_t reap_drained(Peer& peer);
  Peer& connect(const std::string& peer, bool same_host);
  void drop(const std::string& peer);
  void progress_loop();

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;
  std::string address_;
  std::map<void*, ucp_mem_h> regions_;  // by start address
  mutable std::mutex mutex_;            // peers_ and regions_
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  std::atomic<bool> stop_{false};
  std::thread progress_;
};

}  // namespace epserve
