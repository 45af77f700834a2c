// Parts of the dispatcher shared by both modes: handles, input checks, the weighted sum, the mode
// agreement and the factory.
#include "ep/dispatcher.h"

#include <xmmintrin.h>

#include <cstdlib>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ep/dispatcher_internal.h"
#include "ep/low_latency_dispatcher.h"
#include "ep/normal_dispatcher.h"

namespace epserve {

int num_max_dispatch_tokens_per_rank_from_env() {
  const char* value = std::getenv(kNumMaxDispatchTokensEnv);
  if (!value || !*value) return 128;
  char* end = nullptr;
  long n = std::strtol(value, &end, 10);
  EPS_CHECK(end && *end == '\0' && n > 0 && n < (1 << 30), "{}='{}' must be a positive integer",
            kNumMaxDispatchTokensEnv, value);
  return static_cast<int>(n);
}

DispatchHandle::DispatchHandle() = default;
DispatchHandle::DispatchHandle(std::unique_ptr<HandleState> state) : state_(std::move(state)) {}
DispatchHandle::DispatchHandle(DispatchHandle&&) noexcept = default;
DispatchHandle& DispatchHandle::operator=(DispatchHandle&&) noexcept = default;
DispatchHandle::~DispatchHandle() = default;

const DispatchOutput& DispatchHandle::output() const {
  EPS_CHECK(state_ && state_->stage != HandleState::kSent,
            "dispatch output read before dispatch_recv completed");
  return state_->out;
}

float* DispatchHandle::y_buffer() {
  EPS_CHECK(state_ && state_->stage != HandleState::kSent,
            "y buffer asked for before dispatch_recv completed");
  return state_->y_buffer();
}

int DispatchHandle::buffer_index() const {
  return state_ ? state_->buffer : -1;
}

Dispatcher::Dispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config)
    : comm_(std::move(comm)), config_(config) {
  const int ranks = comm_->size();
  EPS_CHECK(config_.hidden > 0 && config_.num_topk > 0,
            "dispatcher needs hidden > 0 and num_topk > 0, found {} and {}", config_.hidden,
            config_.num_topk);
  EPS_CHECK(config_.num_physical_experts >= ranks && config_.num_physical_experts % ranks == 0,
            "{} physical experts cannot be spread evenly over {} ranks (--ep-size)",
            config_.num_physical_experts, ranks);
}

int Dispatcher::num_local_experts() const {
  return config_.num_physical_experts / comm_->size();
}

const DispatchLayout& Dispatcher::prepare(const DispatchInput& in, DispatchLayout& storage) const {
  EPS_CHECK(in.num_tokens >= 0, "dispatch of {} tokens", in.num_tokens);
  EPS_CHECK(in.num_tokens == 0 || (in.x && in.topk_idx && in.topk_weights),
            "dispatch of {} tokens needs x, topk_idx and topk_weights", in.num_tokens);
  if (!in.layout) {
    storage = get_dispatch_layout(in.topk_idx, in.num_tokens, config_.num_topk,
                                  config_.num_physical_experts, comm_->size());
    return storage;
  }
  const DispatchLayout& l = *in.layout;
  EPS_CHECK(l.num_tokens == in.num_tokens && l.num_topk == config_.num_topk &&
                l.num_ranks == comm_->size() && l.num_experts == config_.num_physical_experts,
            "dispatch layout is for {} tokens, top-{}, {} ranks, {} experts; the dispatch has {} "
            "tokens, top-{}, {} ranks, {} experts",
            l.num_tokens, l.num_topk, l.num_ranks, l.num_experts, in.num_tokens, config_.num_topk,
            comm_->size(), config_.num_physical_experts);
  return l;
}

DispatchHandle Dispatcher::dispatch(const DispatchInput& input) {
  DispatchHandle handle = dispatch_send(input);
  dispatch_recv(handle);
  return handle;
}

void Dispatcher::combine(const float* y, DispatchHandle& handle, float* out) {
  combine_send(y, handle);
  combine_recv(handle, out);
}

std::unique_ptr<Dispatcher> make_dispatcher(DispatchMode mode, Communicator& comm,
                                            const DispatchConfig& config) {
  // A private communicator, so that dispatcher messages never match the caller's.
  std::shared_ptr<Communicator> own = comm.split(0, comm.rank());
  if (mode == DispatchMode::kNormal) return std::make_unique<NormalDispatcher>(own, config);
  return std::make_unique<LowLatencyDispatcher>(own, config);
}

DispatchMode agree_dispatch_mode(Communicator& comm, bool has_prefill_tokens, int64_t num_tokens,
                                 int num_max_dispatch_tokens_per_rank, int64_t* max_num_tokens) {
  int64_t votes[2] = {(has_prefill_tokens || num_tokens > num_max_dispatch_tokens_per_rank) ? 1 : 0,
                      num_tokens};
  comm.allreduce(votes, 2, ReduceOp::kMax);
  if (max_num_tokens) *max_num_tokens = votes[1];
  return votes[0] ? DispatchMode::kNormal : DispatchMode::kLowLatency;
}

void weighted_sum_row_avx2(const float* const* rows, const float* weights, int num_topk,
                           int64_t hidden, float* out);

void weighted_sum_row_scalar(const float* const* rows, const float* weights, int num_topk,
                             int64_t hidden, float* out) {
  for (int64_t h = 0; h < hidden; ++h) out[h] = 0.0f;
  for (int k = 0; k < num_topk; ++k) {
    const float* row = rows[k];
    if (!row) continue;
    const float w = weights[k];
    for (int64_t h = 0; h < hidden; ++h) out[h] = out[h] + w * row[h];
  }
}

void weighted_sum_row(const float* const* rows, const float* weights, int num_topk, int64_t hidden,
                      float* out) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) {
    weighted_sum_row_avx2(rows, weights, num_topk, hidden, out);
  } else {
    weighted_sum_row_scalar(rows, weights, num_topk, hidden, out);
  }
}

void combine_reference(const float* y_slot, const int32_t* topk_idx, const float* topk_weights,
                       int64_t num_tokens, int num_topk, int64_t hidden, float* out) {
  std::vector<const float*> rows(num_topk);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int k = 0; k < num_topk; ++k) {
      rows[k] = topk_idx[t * num_topk + k] >= 0 ? y_slot + (t * num_topk + k) * hidden : nullptr;
    }
    weighted_sum_row(rows.data(), topk_weights + t * num_topk, num_topk, hidden, out + t * hidden);
  }
}

void stream_copy_avx2(void* dst, const void* src, size_t bytes);

void copy_rows(const std::vector<std::pair<float*, const float*>>& rows, size_t bytes) {
  // Large copies stream past the caches (the receiver reads them much later, if at all from
  // cache); small ones stay in cache for the receiver.
  static const bool avx2 = __builtin_cpu_supports("avx2");
  const bool stream = avx2 && rows.size() * bytes >= kStreamCopyBytes;
  ThreadPool::global().parallel_for(
      static_cast<int64_t>(rows.size()),
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          if (stream) {
            stream_copy_avx2(rows[i].first, rows[i].second, bytes);
          } else {
            std::memcpy(rows[i].first, rows[i].second, bytes);
          }
        }
        // Streaming stores are weakly ordered: make them visible before any signal.
        if (stream) _mm_sfence();
      },
      16);
}

void RowWriter::finish() {
  copy_rows(direct_, row_bytes_);
  direct_.clear();
  for (size_t peer = 0; peer < remote_.size(); ++peer) {
    const auto& rows = remote_[peer];
    if (rows.empty()) continue;
    std::vector<char>& stage = staging_[peer];
    stage.resize(rows.size() * row_bytes_);
    char* out = stage.data();
    ThreadPool::global().parallel_for(
        static_cast<int64_t>(rows.size()),
        [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            std::memcpy(out + i * row_bytes_, rows[i].second, row_bytes_);
          }
        },
        16);
    size_t first = 0;
    for (size_t i = 1; i <= rows.size(); ++i) {
      if (i < rows.size() && rows[i].first == rows[i - 1].first + row_bytes_) continue;
      buf_.put(static_cast<int>(peer), rows[first].first, out + first * row_bytes_,
               (i - first) * row_bytes_);
      first = i;
    }
  }
}

}  // namespace epserve
