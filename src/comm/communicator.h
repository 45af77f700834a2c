// Communicator: collectives and point-to-point messages among a group of ranks, over UCX.
//
//   auto world = Communicator::create_world(rank_info_from_env());   // all ranks of the job
//   auto tp = world->split(/*color=*/dp_group, /*key=*/world->rank()); // attention TP group
//   world->set_context("layer 3 moe dispatch");                        // named in error lines
//   tp->allreduce(partial.data(), partial.size(), ReduceOp::kSum);
//
// Every collective must be called by all ranks of the communicator in the same order. Results are
// deterministic: allreduce / reduce_scatter fold contributions in rank order 0..n-1, so floats come
// out bit-identical on every rank and in every run for a given n, whatever the timing.
// Ranks in error lines are world ranks. Blocking calls follow the wait policy of world.h (spin,
// then block; deadline = timeout(); stop early when the job aborts). A Communicator is used from
// one thread at a time. Destroy every Communicator before the process exits: the last one closes
// the data plane after a barrier with all ranks (a rank that exits without that is reported dead).
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/world.h"

namespace epserve {

enum class ReduceOp { kSum, kMax };

class Communicator;

// A non-blocking send or receive; complete it with Communicator::wait_all.
class Request {
 public:
  Request() = default;
  Request(Request&& other) noexcept { *this = std::move(other); }
  Request& operator=(Request&& other) noexcept;
  ~Request();
  bool pending() const { return ucx_ != nullptr; }

 private:
  friend class Communicator;
  void* ucx_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int peer_ = -1;  // world rank
  bool is_recv_ = false;
  size_t expected_bytes_ = 0;
  std::vector<ucp_dt_iov_t> iov_;
};

class Communicator {
 public:
  // The world communicator: every rank of the job (a world of 1 when not launched).
  static std::shared_ptr<Communicator> create_world(const RankInfo& info,
                                                    const CommOptions& options = {});

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(world_ranks_.size()); }
  int world_rank() const { return world_ranks_[rank_]; }
  int world_rank_of(int r) const { return world_ranks_[r]; }
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  World& world() { return *world_; }
  const std::shared_ptr<World>& world_ptr() const { return world_; }

  // What the caller is doing, named in every error line ("layer 3 moe dispatch").
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Sub-communicators (collective over this communicator). split: ranks with the same color form
  // one communicator, ordered by (key, rank); color < 0 gives nullptr. group: every rank passes
  // the same list of ranks of this communicator; members get the group (in list order), others
  // nullptr.
  std::shared_ptr<Communicator> split(int color, int key);
  std::shared_ptr<Communicator> group(const std::vector<int>& ranks);

  void barrier();
  void broadcast(void* data, size_t bytes, int root);
  // recv holds size() blocks of `bytes`, in rank order.
  void allgather(const void* send, size_t bytes, void* recv);
  // recv holds the contributions packed in rank order; recv_bytes[r] is rank r's size.
  void allgatherv(const void* send, size_t bytes, void* recv,
                  const std::vector<size_t>& recv_bytes);
  // T is float, double or int64_t.
  template <class T>
  void allreduce(T* data, size_t count, ReduceOp op);
  // send holds size() blocks of count elements; recv gets block rank() reduced over ranks.
  template <class T>
  void reduce_scatter(const T* send, T* recv, size_t count, ReduceOp op);
  // send and recv hold size() blocks of `bytes`, block r going to / coming from rank r.
  void all_to_all(const void* send, void* recv, size_t bytes);
  // Blocks packed in rank order; send_bytes[r] goes to rank r, recv_bytes[r] comes from rank r.
  void all_to_allv(const void* send, const std::vector<size_t>& send_bytes, void* recv,
                   const std::vector<size_t>& recv_bytes);

  // Point-to-point; tag in [0, 2^23). recv expects exactly `bytes`.
  void send(int peer, const void* data, size_t bytes, int tag = 0);
  void recv(int peer, void* data, size_t bytes, int tag = 0);
  Request isend(int peer, const void* data, size_t bytes, int tag = 0);
  // Sends rows[0..n) (each row_bytes long) as one message, without packing them first.
  Request isend_rows(int peer, const void* const* rows, size_t n, size_t row_bytes, int tag = 0);
  Request irecv(int peer, void* data, size_t bytes, int tag = 0);
  void wait_all(std::vector<Request>& requests, const char* op = "send/recv");

  // Tags for the collective implementations: each call reserves `rounds` tag values that every
  // rank reserves in the same order.
  uint32_t next_collective_tags(uint32_t rounds);
  Request isend_tagged(int peer, const void* data, size_t bytes, uint32_t seq, bool p2p);
  Request irecv_tagged(int peer, void* data, size_t bytes, uint32_t seq, bool p2p);

  // Tells every rank and launcher of the job to stop; their waits fail naming this reason.
  void abort(const std::string& reason) { world_->abort(reason); }

  // A WaitSpec for an operation of this communicator (named after the outermost collective).
  WaitSpec wait_spec(const char* op) const;

  // Names the collective in progress, so that a wait inside a collective built from others
  // (allreduce from allgather) reports the outer name. Nests; the outermost name wins.
  class OpName {
   public:
    OpName(Communicator& comm, const char* name) : comm_(comm), set_(!comm.current_op_) {
      if (set_) comm_.current_op_ = name;
    }
    ~OpName() {
      if (set_) comm_.current_op_ = nullptr;
    }

   private:
    Communicator& comm_;
    bool set_;
  };

  Communicator(std::shared_ptr<World> world, std::vector<int> world_ranks, int comm_id);

 private:
  uint64_t make_tag(int sender, uint32_t seq, bool p2p) const;
  template <class T>
  void fold(T* out, const T* blocks, size_t count, size_t stride, ReduceOp op) const;

  std::shared_ptr<World> world_;
  std::vector<int> world_ranks_;
  int rank_ = 0;
  int comm_id_ = 0;
  uint32_t seq_ = 0;
  const char* current_op_ = nullptr;
  std::string context_;
  std::chrono::milliseconds timeout_;
};

}  // namespace epserve
