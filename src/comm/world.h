// The data plane of one rank process: a UCX context and worker, an endpoint to every rank of the
// job, the rendezvous-store client, and the wait loop every blocking call goes through.
// Communicators (communicator.h) and symmetric buffers (symmetric_buffer.h) are built on it; user
// code normally only sees Communicator.
//
// Progress: a transfer to a peer on another node (a UCX put over TCP) only moves while some thread
// calls ucp_worker_progress, on the sending and on the receiving side. Without help that happens
// only inside waits, so a put issued before a stretch of compute would sit in the socket until the
// next wait. When a peer is on another node (or EPSERVE_UCX_PROGRESS_THREAD=1; =0 turns it off),
// the worker is created thread-safe (UCS_THREAD_MODE_MULTI) and a progress thread drives it: it
// progresses until idle, then blocks on the worker's event fd (ucp_worker_arm + poll), so it costs
// nothing while the link is quiet and wakes when a socket becomes readable or writable.
//
// Waiting: every wait spins on ucp_worker_progress for a short time, then blocks
// (ucp_worker_arm + poll on the worker's event fd, or a futex for shared-memory signals) in short
// slices, so ranks may outnumber cores. Every wait has a deadline (CommOptions::timeout) and stops
// early when the job is aborted: another rank or launcher posted a reason to the store, a rank's
// store connection dropped, or UCX reported an endpoint error. Each ends in one epserve::Error
// line naming this rank, the rank waited for, the operation and the caller's context string.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/launcher.h"
#include "comm/store.h"
#include "core/error.h"

namespace epserve {

// Thrown by a wait that stops because the job was aborted elsewhere (another rank failed or timed
// out, a launcher was interrupted, a peer's connection broke). A rank's main should print the line
// and exit with kExitPeerFailure, so that the launcher names the rank that failed first.
class PeerFailure : public Error {
 public:
  using Error::Error;
};

struct CommOptions {
  // Deadline of every blocking wait (SGLang's --dist-timeout; epserve's default is 60 s).
  std::chrono::milliseconds timeout{60000};
  // How long a wait spins before it blocks. Negative (default): 50 us, or 1 ms when the launcher
  // pinned this rank to cores of its own (spinning then takes nothing from other ranks).
  // EPSERVE_SPIN_US overrides both.
  std::chrono::microseconds spin{-1};
};

// What a wait is for, used in its error line.
struct WaitSpec {
  const char* op = "wait";               // e.g. "allreduce"
  const std::string* context = nullptr;  // caller's context ("layer 3 moe dispatch")
  std::chrono::milliseconds timeout{60000};
  // The world rank still awaited when the wait fails (-1: none in particular).
  std::function<int()> waiting_for;
  // Optional blocker for the block phase (e.g. a futex wait); gets the slice length in ms.
  std::function<void(int)> block;
  int max_block_ms = 100;  // longest single block slice (re-checks deadline and abort after it)
  bool abort_on_timeout = true;  // a timeout also tells every other rank to stop
};

class World {
 public:
  // Connects to the store (when world_size > 1), creates the UCX worker and endpoints to all ranks.
  World(const RankInfo& info, const CommOptions& options);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return info_.rank; }
  int size() const { return info_.world_size; }
  const RankInfo& info() const { return info_; }
  const CommOptions& options() const { return options_; }
  int node_of(int world_rank) const { return node_of_[world_rank]; }

  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }
  ucp_ep_h ep(int world_rank) const { return eps_[world_rank]; }
  StoreClient* store() { return store_.get(); }

  // Waits until done() returns true; see the note at the top. Throws epserve::Error.
  void wait(const WaitSpec& spec, const std::function<bool()>& done);
  // Throws if the job was aborted or a peer failed; cheap (one atomic load) when all is well.
  void check_alive(const WaitSpec& spec) {
    if (abort_flag_.load(std::memory_order_relaxed)) throw_aborted(spec);
  }
  // Throws PeerFailure: UCX reported that an operation with world rank `peer` failed.
  [[noreturn]] void throw_peer_lost(const WaitSpec& spec, int peer, ucs_status_t status);
  // Formats "rank R: <what>" with the op and context of spec.
  std::string describe(const WaitSpec& spec, const std::string& what) const;

  // Posts a reason to the store: every rank's next or current wait stops with it (PeerFailure).
  // A rank's main calls this with its error line before it exits.
  void abort(const std::string& reason);
  bool aborted() const { return abort_flag_.load(); }
  // Whether the progress thread (see the note at the top) runs.
  bool has_progress_thread() const { return progress_thread_.joinable(); }

  // Reserves n consecutive communicator ids for the job (a store counter); returns the first.
  int allocate_comm_ids(int n);

  // Called from UCX's endpoint error callback.
  void on_peer_error(int world_rank, ucs_status_t status);
  struct ErrorArg {
    World* world;
    int rank;
  };

 private:
  [[noreturn]] void throw_aborted(const WaitSpec& spec);
  // A lost connection is often a consequence (the peer stopped because a third rank died):
  // waits briefly for the store's first reason and returns "; first failure: <reason>", or "".
  std::string first_failure_suffix(const std::string& own);
  void connect_endpoints();
  void connect_self();
  void start_abort_watcher();
  void stop_abort_watcher();
  void close_endpoints();
  void start_progress_thread();
  void stop_progress_thread();

  RankInfo info_;
  CommOptions options_;
  std::unique_ptr<StoreClient> store_;
  std::unique_ptr<StoreClient> watch_store_;
  std::thread watcher_;
  std::atomic<bool> abort_flag_{false};
  std::atomic<bool> closing_{false};
  std::mutex abort_mutex_;
  std::string abort_message_;
  std::string store_reason_;  // the store's kAbortKey, once the watcher saw it
  std::condition_variable store_reason_cv_;
  std::vector<int> node_of_;

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;
  std::vector<ucp_ep_h> eps_;
  std::vector<ErrorArg> error_args_;
  std::thread progress_thread_;
  std::atomic<bool> progress_stop_{false};
};

}  // namespace epserve
