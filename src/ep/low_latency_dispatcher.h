// Low-latency dispatcher (decode): every rank may send at most num_max_dispatch_tokens_per_rank
// tokens; each rank owns, in every other rank's registered buffer, a region for its tokens
// (count, metadata, rows), so senders write one-sided without a count round and signal. The
// receiver expands what arrived into [local experts, capacity * ranks, hidden] with per-expert
// counts. combine writes each (token, slot) output row straight into the source's registered
// [capacity, top-k, hidden] buffer. Two sets of buffers let two batches be in flight.
//
// Why regions cannot be overwritten early: a rank writes into buffer b of step s+1 only after its
// combine of step s on b finished, which needs every rank's combine_send of step s, which each
// rank issues after it expanded its dispatch of step s.
#pragma once

#include <memory>

#include "comm/symmetric_buffer.h"
#include "ep/dispatcher.h"
#include "ep/dispatcher_internal.h"

namespace epserve {

class LowLatencyDispatcher : public Dispatcher {
 public:
  LowLatencyDispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config);
  ~LowLatencyDispatcher() override;
  DispatchMode mode() const override { return DispatchMode::kLowLatency; }
  DispatchHandle dispatch_send(const DispatchInput& input) override;
  void dispatch_recv(DispatchHandle& handle) override;
  void combine_send(const float* y, DispatchHandle& handle) override;
  void combine_recv(DispatchHandle& handle, float* out) override;
  void combine_wait(DispatchHandle& handle) override;

  struct Slot {
    std::unique_ptr<SymmetricBuffer> dispatch_buf;  // [source rank] region: count|meta|rows
    std::unique_ptr<SymmetricBuffer> combine_buf;   // [capacity, top-k, hidden]
    uint64_t step = 0;
    const HandleState* owner = nullptr;
    LazyBuffer recv_x, y;  // [local experts, capacity * ranks, hidden]
    std::vector<int32_t> row_src_rank, row_src_token, row_src_slot;
    std::vector<int64_t> used_rows;            // rows the last batch on this slot filled
    std::vector<const float*> input_rows;      // without expansion: the input of each row
    std::vector<std::vector<char>> send_meta;  // [rank] staging for remote puts
    std::vector<int64_t> send_count;           // [rank]
  };

 private:
  size_t meta_offset() const { return 64; }
  size_t rows_offset() const;
  size_t region_bytes() const;
  int64_t rows_per_expert() const;  // capacity * ranks

  Slot slots_[2];
  int next_slot_ = 0;
};

}  // namespace epserve
