// Normal-mode dispatcher (prefill-sized batches). Each sender writes its token rows and metadata
// straight into the receivers' registered buffers (a copy on one node, UCX puts across nodes, one
// put per run of contiguous rows) and signals; the receiver's recv_x is that buffer. Where the
// rows go: given the most tokens any rank dispatches (DispatchInput::max_tokens_per_rank, agreed
// once per pass with the dispatch mode), source s writes at its own region s * max of every
// receiver's buffer and sends its count with the rows, so nothing waits for the peers before the
// rows go; the receiver makes one block of them (with two ranks nothing moves) and copies its own
// rows in from x. The receive buffer then holds ranks x max rows. Without it, a count round first
// (one allgather of the count matrix) tells every sender where its rows go. Buffers grow,
// collectively, when a batch needs more. combine writes the (token, slot) output rows for a source
// as one block where the source said with its rows (its back buffer holds each rank's rows in
// turn); rows a rank computed for itself are read in place. Two arenas of buffers allow two batches
// in flight.
#pragma once

#include <memory>

#include "comm/symmetric_buffer.h"
#include "ep/dispatcher.h"
#include "ep/dispatcher_internal.h"

namespace epserve {

class NormalDispatcher : public Dispatcher {
 public:
  NormalDispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config);
  ~NormalDispatcher() override;
  DispatchMode mode() const override { return DispatchMode::kNormal; }
  DispatchHandle dispatch_send(const DispatchInput& input) override;
  void dispatch_recv(DispatchHandle& handle) override;
  void combine_send(const float* y, DispatchHandle& handle) override;
  void combine_recv(DispatchHandle& handle, float* out) override;
  void combine_wait(DispatchHandle& handle) override;

  struct Arena {
    const HandleState* owner = nullptr;  // the batch using this arena, if any
    uint64_t step = 0;
    // rows [rows_cap, H], then meta [rows_cap], then (count, combine base) [ranks]
    std::unique_ptr<SymmetricBuffer> landing;
    int64_t rows_cap = 0;
    std::unique_ptr<SymmetricBuffer> back;  // [tokens_cap * K, H] combine rows for our tokens
    int64_t tokens_cap = 0;
    std::vector<std::vector<char>> staging;      // [rank] metadata for remote puts
    std::vector<std::vector<char>> row_staging;  // [rank] rows for remote puts
    Scratch<float> y;
    Scratch<int32_t> recv_topk_idx, recv_src_rank, recv_src_token;
    Scratch<float> recv_topk_weights;
    Scratch<int32_t> expert_row_token, row_src_rank, row_src_token, row_src_slot, slot_y_row;
  };

 private:
  // Grows the arena's buffers (collectively) to hold rows_needed received rows and
  // tokens_needed source tokens.
  void reserve(Arena& arena, int64_t rows_needed, int64_t tokens_needed);

  Arena arenas_[2];
  int next_arena_ = 0;
};

}  // namespace epserve
