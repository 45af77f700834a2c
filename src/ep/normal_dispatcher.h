// Normal-mode dispatcher (prefill-sized batches). A count round first: every rank learns how many
// tokens every rank sends to every rank (one allgather of the count matrix), so every sender knows
// where its rows go in each receiver's buffer. Then each sender writes its token rows and metadata
// straight into the receivers' registered buffers (a copy on one node, UCX puts across nodes) and
// signals; the receiver's recv_x is that buffer, sized to what arrives (buffers grow, collectively,
// when a batch needs more). combine writes each (token, slot) output row into the source's
// [tokens, top-k, hidden] buffer; rows a rank computed for itself are read in place. Two arenas of
// buffers allow two batches in flight.
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

  struct Arena {
    const HandleState* owner = nullptr;  // the batch using this arena, if any
    uint64_t step = 0;
    std::unique_ptr<SymmetricBuffer> landing;  // rows [rows_cap, H], then meta [rows_cap]
    int64_t rows_cap = 0;
    std::unique_ptr<SymmetricBuffer> back;  // [tokens_cap, K, H] combine rows for our tokens
    int64_t tokens_cap = 0;
    std::vector<std::vector<char>> staging;  // [rank] metadata for remote puts
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
