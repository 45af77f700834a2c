#include "ep/low_latency_dispatcher.h"

#include <sys/mman.h>

#include <exception>

#include "core/error.h"
#include "core/thread_pool.h"

namespace epserve {

LazyBuffer::LazyBuffer(size_t bytes) : bytes_(bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EPS_CHECK(p != MAP_FAILED, "cannot reserve {} MB for the low-latency receive buffers",
            bytes >> 20);
  data_ = p;
}

LazyBuffer::~LazyBuffer() {
  if (data_) munmap(data_, bytes_);
}

LazyBuffer& LazyBuffer::operator=(LazyBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

namespace {

struct LowLatencyState : HandleState {
  LowLatencyDispatcher::Slot* slot = nullptr;
  uint64_t step = 0;
  const float* x = nullptr;  // our tokens' rows: read in place for our own experts
  const float* y = nullptr;
  std::vector<int32_t> self_y_row;  // [T, K] row of y holding (token, slot) when computed here
  ~LowLatencyState() override {
    if (slot && slot->owner == this) slot->owner = nullptr;
  }
  float* y_buffer() override { return slot->y.data(); }
};

LowLatencyState& state_of(DispatchHandle& h, HandleState::Stage expected, const char* call) {
  auto* s = dynamic_cast<LowLatencyState*>(h.state());
  EPS_CHECK(s, "{}: the handle does not come from a low-latency dispatch", call);
  EPS_CHECK(s->stage == expected, "{} called out of order for this dispatch handle", call);
  return *s;
}

size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}

}  // namespace

size_t LowLatencyDispatcher::rows_offset() const {
  return align64(meta_offset() +
                 config_.num_max_dispatch_tokens_per_rank * MetaLayout{config_.num_topk}.bytes());
}

size_t LowLatencyDispatcher::region_bytes() const {
  return rows_offset() + config_.num_max_dispatch_tokens_per_rank * config_.hidden * sizeof(float);
}

int64_t LowLatencyDispatcher::rows_per_expert() const {
  return int64_t(config_.num_max_dispatch_tokens_per_rank) * comm_->size();
}

LowLatencyDispatcher::LowLatencyDispatcher(std::shared_ptr<Communicator> comm,
                                           const DispatchConfig& config)
    : Dispatcher(std::move(comm), config) {
  EPS_CHECK(config_.num_max_dispatch_tokens_per_rank > 0,
            "low-latency capacity must be positive, found {} ({})",
            config_.num_max_dispatch_tokens_per_rank, kNumMaxDispatchTokensEnv);
  const int n = comm_->size(), K = config_.num_topk;
  const int64_t cap = config_.num_max_dispatch_tokens_per_rank, H = config_.hidden;
  const int64_t rows = num_local_experts() * rows_per_expert();
  for (Slot& slot : slots_) {
    slot.dispatch_buf = std::make_unique<SymmetricBuffer>(*comm_, n * region_bytes());
    slot.combine_buf = std::make_unique<SymmetricBuffer>(*comm_, cap * K * H * sizeof(float));
    if (config_.low_latency_expand) {
      slot.recv_x = LazyBuffer(rows * H * sizeof(float));
    } else {
      slot.input_rows.assign(rows, nullptr);
    }
    slot.y = LazyBuffer(rows * H * sizeof(float));
    slot.row_src_rank.assign(rows, -1);
    slot.row_src_token.assign(rows, -1);
    slot.row_src_slot.assign(rows, -1);
    slot.send_meta.assign(n, std::vector<char>(cap * MetaLayout{K}.bytes()));
    slot.send_count.assign(n, 0);
  }
}

// No rank writes into these buffers any more once every rank got here.
LowLatencyDispatcher::~LowLatencyDispatcher() {
  try {
    if (!comm_->world().aborted() && std::uncaught_exceptions() == 0) comm_->barrier();
  } catch (const Error&) {
  }
}

DispatchHandle LowLatencyDispatcher::dispatch_send(const DispatchInput& in) {
  DispatchLayout storage;
  const DispatchLayout& layout = prepare(in, storage);
  const int n = comm_->size(), me = comm_->rank(), K = config_.num_topk;
  const int per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = in.num_tokens;
  const int cap = config_.num_max_dispatch_tokens_per_rank;
  EPS_CHECK(T <= cap,
            "low-latency dispatch: rank {} has {} tokens but the capacity is {} tokens per rank; "
            "raise {} or use --deepep-mode normal",
            comm_->world_rank(), T, cap, kNumMaxDispatchTokensEnv);
  for (int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < K; ++k) {
      for (int j = 0; j < k; ++j) {
        int32_t e = in.topk_idx[t * K + k];
        EPS_CHECK(e < 0 || e != in.topk_idx[t * K + j],
                  "low-latency dispatch: token {} lists expert {} twice in its top-k", t, e);
      }
    }
  }
  Slot& slot = slots_[next_slot_];
  EPS_CHECK(!slot.owner,
            "low-latency dispatch: both buffers are in use by earlier dispatches "
            "that were not combined; at most two batches can be in flight");
  auto st = std::make_unique<LowLatencyState>();
  st->buffer = next_slot_;
  next_slot_ ^= 1;
  slot.owner = st.get();
  st->slot = &slot;
  st->step = ++slot.step;
  st->num_tokens = T;
  st->x = in.x;
  st->topk_idx.assign(in.topk_idx, in.topk_idx + T * K);
  st->topk_weights.assign(in.topk_weights, in.topk_weights + T * K);

  MetaLayout meta{K};
  SymmetricBuffer& buf = *slot.dispatch_buf;
  const size_t region = me * region_bytes();
  std::vector<std::pair<float*, const float*>> direct_rows;
  for (int i = 0; i < n; ++i) {
    int d = (me + i) % n;
    char* staging = slot.send_meta[d].data();
    int64_t count = 0;
    char* peer = static_cast<char*>(buf.peer_data(d));
    for (int64_t t = 0; t < T; ++t) {
      if (!layout.in_rank(t, d)) continue;
      meta.write(staging + count * meta.bytes(), static_cast<int32_t>(t), in.topk_idx + t * K,
                 in.topk_weights + t * K, d, per_rank);
      size_t offset = region + rows_offset() + count * H * sizeof(float);
      if (d == me) {
        // Our own rows are read from x in place by dispatch_recv.
      } else if (peer) {
        direct_rows.push_back({reinterpret_cast<float*>(peer + offset), in.x + t * H});
      } else {
        buf.put(d, offset, in.x + t * H, H * sizeof(float));
      }
      ++count;
    }
    slot.send_count[d] = count;
  }
  copy_rows(direct_rows, H * sizeof(float));
  for (int i = 0; i < n; ++i) {
    int d = (me + i) % n;
    buf.put(d, region + meta_offset(), slot.send_meta[d].data(), slot.send_count[d] * meta.bytes());
    buf.put(d, region, &slot.send_count[d], sizeof(int64_t));
    buf.signal(d, st->step);
  }
  // Not flushed here: the puts move while other work runs, and dispatch_recv completes them.
  return DispatchHandle(std::move(st));
}

void LowLatencyDispatcher::dispatch_recv(DispatchHandle& handle) {
  LowLatencyState& st = state_of(handle, HandleState::kSent, "dispatch_recv");
  Slot& slot = *st.slot;
  const int n = comm_->size(), K = config_.num_topk, E = num_local_experts();
  const int64_t H = config_.hidden, cap = config_.num_max_dispatch_tokens_per_rank;
  const int64_t per_expert = rows_per_expert();
  SymmetricBuffer& buf = *slot.dispatch_buf;
  buf.wait_signals(st.step, "low-latency dispatch");
  buf.flush("low-latency dispatch");  // our puts of this batch (x rows, metadata, counts)
  MetaLayout meta{K};
  DispatchOutput& o = st.out;
  o.num_recv_tokens_per_expert.assign(E, 0);
  // Unused rows keep -1: clear only what the previous batch on this slot wrote.
  for (int64_t j : slot.used_rows) {
    slot.row_src_rank[j] = slot.row_src_token[j] = slot.row_src_slot[j] = -1;
  }
  slot.used_rows.clear();
  std::vector<std::pair<float*, const float*>> rows;
  st.self_y_row.assign(st.num_tokens * K, -1);
  for (int s = 0; s < n; ++s) {
    const char* region = static_cast<const char*>(buf.data()) + s * region_bytes();
    int64_t count = *reinterpret_cast<const int64_t*>(region);
    EPS_CHECK(count >= 0 && count <= cap, "rank {} wrote a token count of {} (capacity {})",
              comm_->world_rank_of(s), count, cap);
    const auto* x = reinterpret_cast<const float*>(region + rows_offset());
    for (int64_t i = 0; i < count; ++i) {
      const char* m = region + meta_offset() + i * meta.bytes();
      const int32_t* local = meta.local_experts(m);
      for (int k = 0; k < K; ++k) {
        int32_t e = local[k];
        if (e < 0) continue;
        EPS_CHECK(e < E, "rank {} sent local expert {} (this rank has {})", comm_->world_rank_of(s),
                  e, E);
        int64_t pos = o.num_recv_tokens_per_expert[e]++;
        EPS_CHECK(pos < per_expert, "low-latency receive overflow for local expert {}", e);
        int64_t j = e * per_expert + pos;
        const float* src = s == comm_->rank() ? st.x + int64_t(meta.token(m)) * H : x + i * H;
        if (config_.low_latency_expand) {
          rows.push_back({slot.recv_x.data() + j * H, src});
        } else {
          slot.input_rows[j] = src;
        }
        if (s == comm_->rank())
          st.self_y_row[int64_t(meta.token(m)) * K + k] = static_cast<int32_t>(j);
        slot.row_src_rank[j] = s;
        slot.row_src_token[j] = meta.token(m);
        slot.row_src_slot[j] = k;
        slot.used_rows.push_back(j);
      }
    }
  }
  copy_rows(rows, H * sizeof(float));
  o.recv_x = slot.recv_x.data();
  if (!config_.low_latency_expand) o.expert_input_rows = slot.input_rows.data();
  o.num_recv_tokens = static_cast<int64_t>(slot.used_rows.size());
  o.expert_row_offset.resize(E);
  for (int e = 0; e < E; ++e) o.expert_row_offset[e] = e * per_expert;
  o.num_y_rows = E * per_expert;
  o.row_src_rank = slot.row_src_rank.data();
  o.row_src_token = slot.row_src_token.data();
  o.row_src_slot = slot.row_src_slot.data();
  st.stage = HandleState::kReceived;
}

void LowLatencyDispatcher::combine_send(const float* y, DispatchHandle& handle) {
  LowLatencyState& st = state_of(handle, HandleState::kReceived, "combine_send");
  Slot& slot = *st.slot;
  const int n = comm_->size(), K = config_.num_topk, E = num_local_experts();
  const int64_t H = config_.hidden, per_expert = rows_per_expert();
  EPS_CHECK(y, "combine_send needs y [{}, {}]", st.out.num_y_rows, H);
  SymmetricBuffer& buf = *slot.combine_buf;
  st.y = y;
  std::vector<std::pair<float*, const float*>> direct_rows;
  for (int e = 0; e < E; ++e) {
    for (int64_t pos = 0; pos < st.out.num_recv_tokens_per_expert[e]; ++pos) {
      int64_t j = e * per_expert + pos;
      int s = slot.row_src_rank[j];
      if (s == comm_->rank()) continue;  // combine_recv reads our own rows from y
      size_t offset =
          (size_t(slot.row_src_token[j]) * K + slot.row_src_slot[j]) * H * sizeof(float);
      if (char* peer = static_cast<char*>(buf.peer_data(s))) {
        direct_rows.push_back({reinterpret_cast<float*>(peer + offset), y + j * H});
      } else {
        buf.put(s, offset, y + j * H, H * sizeof(float));
      }
    }
  }
  copy_rows(direct_rows, H * sizeof(float));
  for (int i = 0; i < n; ++i) buf.signal((comm_->rank() + i) % n, st.step);
  // Flushed by combine_recv: y must stay valid until then.
  st.stage = HandleState::kCombineSent;
}

void LowLatencyDispatcher::combine_wait(DispatchHandle& handle) {
  LowLatencyState& st = state_of(handle, HandleState::kCombineSent, "combine_wait");
  if (st.combine_arrived) return;
  st.slot->combine_buf->wait_signals(st.step, "low-latency combine");
  st.slot->combine_buf->flush("low-latency combine");
  st.combine_arrived = true;
}

void LowLatencyDispatcher::combine_recv(DispatchHandle& handle, float* out) {
  combine_wait(handle);
  LowLatencyState& st = state_of(handle, HandleState::kCombineSent, "combine_recv");
  Slot& slot = *st.slot;
  const int K = config_.num_topk;
  const int64_t H = config_.hidden, T = st.num_tokens;
  SymmetricBuffer& buf = *slot.combine_buf;
  const float* back = static_cast<const float*>(buf.data());
  const int me = comm_->rank(), per_rank = num_local_experts();
  ThreadPool::global().parallel_for(T, [&](int64_t begin, int64_t end) {
    std::vector<const float*> rows(K);
    for (int64_t t = begin; t < end; ++t) {
      for (int k = 0; k < K; ++k) {
        int32_t e = st.topk_idx[t * K + k];
        if (e < 0) {
          rows[k] = nullptr;
        } else if (e / per_rank == me) {
          rows[k] = st.y + int64_t(st.self_y_row[t * K + k]) * H;
        } else {
          rows[k] = back + (t * K + k) * H;
        }
      }
      weighted_sum_row(rows.data(), st.topk_weights.data() + t * K, K, H, out + t * H);
    }
  });
  st.stage = HandleState::kDone;
  slot.owner = nullptr;
}

}  // namespace epserve
