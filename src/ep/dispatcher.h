// The dispatcher (epserve's DeepEP): sends each token to the ranks that hold its top-k experts and
// brings the expert outputs back. One interface, two implementations:
//   normal       counts are exchanged first, then the payload; receive buffers are sized to what
//                arrives (prefill-sized batches).
//   low_latency  fixed capacity num_max_dispatch_tokens_per_rank, one-sided writes into
//                pre-registered buffers, no count round, two buffers so that two batches can be in
//                flight (decode; two-batch overlap).
//
//   auto layout = get_dispatch_layout(topk_idx, T, K, num_physical_experts, ranks);  // optional
//   DispatchHandle h = dispatcher->dispatch({x, topk_idx, topk_weights, T, &layout});
//   const DispatchOutput& o = h.output();
//   for e in local experts: rows [o.expert_row_offset[e], + o.num_recv_tokens_per_expert[e]) of
//       y (= h.y_buffer()) := expert_e(input rows)        // input: see DispatchOutput
//   dispatcher->combine(h.y_buffer(), h, out);            // out[T, H] on the source rank
//
// A token whose top-k experts include several on one rank is sent to that rank once, with the
// list of its local slots. combine brings back one row per (token, top-k slot) and the source
// computes out[t] = sum over k = 0..K-1 (in that order, skipping ids of -1) of w[t,k] * y[t,k],
// as combine_reference() does, so the result is bit-identical whatever the layout or arrival order.
// Every rank of the communicator calls dispatch and combine the same number of times, in the same
// order (ranks without tokens pass num_tokens = 0). Hidden payloads are fp32. Pointers in
// DispatchOutput and y_buffer() live in the dispatcher's buffers: valid until combine_recv of
// that batch returns. A dispatcher is used from one thread (the thread that owns the
// communicator); large copies run on ThreadPool::global().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "ep/dispatch_layout.h"

namespace epserve {

enum class DispatchMode { kNormal, kLowLatency };

// SGLang's name for the low-latency capacity (an environment variable there, default 128).
inline constexpr const char* kNumMaxDispatchTokensEnv =
    "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK";
// The capacity from that variable, or 128.
int num_max_dispatch_tokens_per_rank_from_env();

struct DispatchConfig {
  int64_t hidden = 0;
  int num_topk = 0;
  int num_physical_experts = 0;                // over all ranks; a multiple of the number of ranks
  int num_max_dispatch_tokens_per_rank = 128;  // low-latency capacity
  // Low-latency only. true: recv_x is the [local experts, capacity * ranks, hidden] layout (the
  // receiver copies each (token, slot) row into it). false (the engine's default,
  // EPSERVE_LOW_LATENCY_LAYOUT=rows): no receive-side copy; recv_x is null and experts read their
  // input rows through expert_input_rows, which point into the receive buffers (and into this
  // rank's x, which must then stay valid until combine_send).
  bool low_latency_expand = true;
};

struct DispatchInput {
  const float* x = nullptr;             // [num_tokens, hidden]; valid until dispatch_recv returns
  const int32_t* topk_idx = nullptr;    // [num_tokens, num_topk] physical expert ids, -1 = none
  const float* topk_weights = nullptr;  // [num_tokens, num_topk]
  int64_t num_tokens = 0;
  const DispatchLayout* layout = nullptr;  // from get_dispatch_layout; computed when null
  // Normal mode: the most tokens any rank of the communicator passes to this dispatch, the same
  // on every rank (agree_dispatch_mode gives it). Each source then writes into a region of its
  // own in the receivers' buffers and sends its counts with its rows: no count round waits for
  // the peers before the rows go. 0: unknown, a count round (an allgather) finds the offsets.
  int64_t max_tokens_per_rank = 0;
};

// What this rank received.
struct DispatchOutput {
  // normal: [num_recv_tokens, hidden], one row per received token, ordered by source rank, then
  //         source token index.
  // low_latency: [num_local_experts, capacity * ranks, hidden]; expert e's valid rows are
  //         [0, num_recv_tokens_per_expert[e]), ordered by source rank, token, slot.
  const float* recv_x = nullptr;
  int64_t num_recv_tokens = 0;  // normal: rows of recv_x; low_latency: valid rows in all experts
  // normal only (nullptr in low_latency), per received token:
  const int32_t* recv_topk_idx = nullptr;           // [num_recv_tokens, K] local expert index or -1
  const float* recv_topk_weights = nullptr;         // [num_recv_tokens, K]
  const int32_t* recv_src_rank = nullptr;           // [num_recv_tokens]
  const int32_t* recv_src_token = nullptr;          // [num_recv_tokens]
  std::vector<int64_t> num_recv_tokens_per_expert;  // [num_local_experts]

  // Expert-major rows, the layout of y given to combine (both modes): expert e owns rows
  // [expert_row_offset[e], expert_row_offset[e] + num_recv_tokens_per_expert[e]).
  std::vector<int64_t> expert_row_offset;  // [num_local_experts]
  int64_t num_y_rows = 0;                  // rows of y (low_latency includes unused rows)
  // normal: the recv_x row that expert-major row j computes on (gather index);
  // low_latency: nullptr (recv_x is already expert-major: row j of y reads row j of recv_x).
  const int32_t* expert_row_token = nullptr;  // [num_y_rows]
  // Where expert-major row j comes from (-1 in unused rows).
  const int32_t* row_src_rank = nullptr;   // [num_y_rows]
  const int32_t* row_src_token = nullptr;  // [num_y_rows]
  const int32_t* row_src_slot = nullptr;   // [num_y_rows] top-k slot k

  // low_latency with low_latency_expand = false: the input row of each expert-major row.
  const float* const* expert_input_rows = nullptr;  // [num_y_rows]

  // The input row of expert-major row j, in every mode and layout.
  const float* expert_input_row(int64_t j, int64_t hidden) const {
    if (expert_input_rows) return expert_input_rows[j];
    return recv_x + (expert_row_token ? expert_row_token[j] : j) * hidden;
  }
};

struct HandleState;

// Returned by dispatch, given back to combine. Move-only.
class DispatchHandle {
 public:
  DispatchHandle();
  explicit DispatchHandle(std::unique_ptr<HandleState> state);
  DispatchHandle(DispatchHandle&&) noexcept;
  DispatchHandle& operator=(DispatchHandle&&) noexcept;
  ~DispatchHandle();

  const DispatchOutput& output() const;
  // [num_y_rows, hidden] owned by the handle: write expert outputs here (or pass your own y).
  float* y_buffer();
  // low_latency: which of the two buffers this batch uses (0 or 1); normal: the same, for arenas.
  int buffer_index() const;
  HandleState* state() { return state_.get(); }

 private:
  std::unique_ptr<HandleState> state_;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual DispatchMode mode() const = 0;
  const DispatchConfig& config() const { return config_; }
  int num_local_experts() const;

  // Split halves (DeepEP's return_recv_hook / async_finish): dispatch_send issues this rank's
  // sends and returns without waiting for them; dispatch_recv waits for what arrives and for this
  // rank's own sends to complete (so input.x must stay valid until it returns). Likewise
  // combine_send / combine_recv (y must stay valid until combine_recv returns). At most two
  // batches may be between dispatch_send and combine_recv at a time.
  virtual DispatchHandle dispatch_send(const DispatchInput& input) = 0;
  virtual void dispatch_recv(DispatchHandle& handle) = 0;
  // y: [num_y_rows, hidden] in the expert-major layout of handle.output().
  virtual void combine_send(const float* y, DispatchHandle& handle) = 0;
  // out: [num_tokens, hidden] of the matching dispatch; see the formula at the top.
  virtual void combine_recv(DispatchHandle& handle, float* out) = 0;
  // The wait part of combine_recv alone (the peers' rows are here, our sends are done); then
  // combine_recv only sums. Optional.
  virtual void combine_wait(DispatchHandle& handle) = 0;

  DispatchHandle dispatch(const DispatchInput& input);
  void combine(const float* y, DispatchHandle& handle, float* out);

 protected:
  Dispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config);
  // Checks the input against the config; returns the layout to use (input's or `storage`).
  const DispatchLayout& prepare(const DispatchInput& input, DispatchLayout& storage) const;

  std::shared_ptr<Communicator> comm_;  // a private split of the caller's communicator
  DispatchConfig config_;
};

// Collective over comm: builds a dispatcher of the given mode (buffers are registered now).
std::unique_ptr<Dispatcher> make_dispatcher(DispatchMode mode, Communicator& comm,
                                            const DispatchConfig& config);

// --deepep-mode auto: every rank must use the same mode in a step. Normal when any rank has a
// prefill token or more tokens than the low-latency capacity, else low-latency. One allreduce,
// which also gives the largest num_tokens of any rank in *max_num_tokens when it is not null.
DispatchMode agree_dispatch_mode(Communicator& comm, bool has_prefill_tokens, int64_t num_tokens,
                                 int num_max_dispatch_tokens_per_rank,
                                 int64_t* max_num_tokens = nullptr);

// The single-rank reference of combine's sum: out[t] = sum_k w[t,k] * y_slot[t,k] in slot order,
// skipping topk_idx == -1. y_slot: [num_tokens, num_topk, hidden].
void combine_reference(const float* y_slot, const int32_t* topk_idx, const float* topk_weights,
                       int64_t num_tokens, int num_topk, int64_t hidden, float* out);

// One output row of combine: rows[k] is slot k's expert output (nullptr where topk_idx is -1).
// AVX2 when the CPU has it, else scalar; both give the same bits (no FMA).
void weighted_sum_row(const float* const* rows, const float* weights, int num_topk, int64_t hidden,
                      float* out);
void weighted_sum_row_scalar(const float* const* rows, const float* weights, int num_topk,
                             int64_t hidden, float* out);

}  // namespace epserve
