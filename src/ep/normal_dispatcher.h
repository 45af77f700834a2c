// Normal-mode dispatcher (prefill-sized batches): a count round (each rank tells each other rank
// how many tokens it will send), then the payload as tagged messages straight from the rows of x
// (no packing copy); receive buffers are sized to what arrives. combine sends each (token, slot)
// output row back to its source. Two arenas of reusable buffers allow two batches in flight.
#pragma once

#include "ep/dispatcher.h"
#include "ep/dispatcher_internal.h"

namespace epserve {

class NormalDispatcher : public Dispatcher {
 public:
  NormalDispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config);
  DispatchMode mode() const override { return DispatchMode::kNormal; }
  DispatchHandle dispatch_send(const DispatchInput& input) override;
  void dispatch_recv(DispatchHandle& handle) override;
  void combine_send(const float* y, DispatchHandle& handle) override;
  void combine_recv(DispatchHandle& handle, float* out) override;

  struct Arena {
    const HandleState* owner = nullptr;  // the batch using this arena, if any
    Scratch<float> recv_x, y, combine_rows;
    Scratch<char> recv_meta;
    Scratch<int32_t> recv_topk_idx, recv_src_rank, recv_src_token;
    Scratch<float> recv_topk_weights;
    Scratch<int32_t> expert_row_token, row_src_rank, row_src_token, row_src_slot, slot_y_row;
  };

 private:
  Arena arenas_[2];
  int next_arena_ = 0;
  uint32_t next_tag_ = 0;
};

}  // namespace epserve
