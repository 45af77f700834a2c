#include "ep/normal_dispatcher.h"

#include <exception>

#include "core/error.h"
#include "core/thread_pool.h"

namespace epserve {
namespace {

struct NormalState : HandleState {
  NormalDispatcher::Arena* arena = nullptr;
  int64_t hidden = 0;
  uint64_t step = 0;
  const float* x = nullptr;
  std::vector<int64_t> counts;       // [source][destination] tokens, then [source] num_tokens
  std::vector<int64_t> recv_offset;  // [source + 1] first row from each source in our buffer
  const float* y = nullptr;

  ~NormalState() override {
    if (arena && arena->owner == this) arena->owner = nullptr;
  }
  float* y_buffer() override { return arena->y.get(std::max<int64_t>(out.num_y_rows, 1) * hidden); }
};

NormalState& state_of(DispatchHandle& h, HandleState::Stage expected, const char* call) {
  auto* s = dynamic_cast<NormalState*>(h.state());
  EPS_CHECK(s, "{}: the handle does not come from a normal-mode dispatch", call);
  EPS_CHECK(s->stage == expected, "{} called out of order for this dispatch handle", call);
  return *s;
}

}  // namespace

NormalDispatcher::NormalDispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config)
    : Dispatcher(std::move(comm), config) {
  for (Arena& arena : arenas_) arena.staging.resize(comm_->size());
}

// No rank writes into these buffers any more once every rank got here.
NormalDispatcher::~NormalDispatcher() {
  try {
    if (!comm_->world().aborted() && std::uncaught_exceptions() == 0) comm_->barrier();
  } catch (const Error&) {
  }
}

void NormalDispatcher::reserve(Arena& arena, int64_t rows_needed, int64_t tokens_needed) {
  const int K = config_.num_topk;
  const int64_t H = config_.hidden;
  const size_t row_bytes = H * sizeof(float) + MetaLayout{K}.bytes();
  // Every rank sees the same counts, so every rank takes the same decisions here.
  if (rows_needed > arena.rows_cap) {
    arena.rows_cap = std::max<int64_t>(rows_needed, arena.rows_cap * 5 / 4);
    arena.landing.reset();
    arena.landing = std::make_unique<SymmetricBuffer>(*comm_, arena.rows_cap * row_bytes);
  }
  if (tokens_needed > arena.tokens_cap) {
    arena.tokens_cap = std::max<int64_t>(tokens_needed, arena.tokens_cap * 5 / 4);
    arena.back.reset();
    arena.back =
        std::make_unique<SymmetricBuffer>(*comm_, arena.tokens_cap * K * H * sizeof(float));
  }
}

DispatchHandle NormalDispatcher::dispatch_send(const DispatchInput& in) {
  DispatchLayout storage;
  const DispatchLayout& layout = prepare(in, storage);
  Communicator& comm = *comm_;
  const int n = comm.size(), me = comm.rank(), K = config_.num_topk;
  const int per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = in.num_tokens;
  Arena& arena = arenas_[next_arena_];
  EPS_CHECK(!arena.owner,
            "normal dispatch: both buffers are in use by earlier dispatches that were not "
            "combined; at most two batches can be in flight");
  auto st = std::make_unique<NormalState>();
  st->buffer = next_arena_;
  next_arena_ ^= 1;
  arena.owner = st.get();
  st->arena = &arena;
  st->hidden = H;
  st->num_tokens = T;
  st->x = in.x;
  st->topk_idx.assign(in.topk_idx, in.topk_idx + T * K);
  st->topk_weights.assign(in.topk_weights, in.topk_weights + T * K);

  // The count round: row s of the matrix is what rank s sends to each rank, then its batch size.
  std::vector<int64_t> mine(n + 1);
  for (int d = 0; d < n; ++d) mine[d] = layout.num_tokens_per_rank[d];
  mine[n] = T;
  st->counts.resize(n * (n + 1));
  comm.allgather(mine.data(), (n + 1) * sizeof(int64_t), st->counts.data());
  auto count = [&](int s, int d) { return st->counts[s * (n + 1) + d]; };
  int64_t rows_needed = 0, tokens_needed = 0;
  for (int d = 0; d < n; ++d) {
    int64_t rows = 0;
    for (int s = 0; s < n; ++s) rows += count(s, d);
    rows_needed = std::max(rows_needed, rows);
    tokens_needed = std::max(tokens_needed, count(d, n));
  }
  reserve(arena, rows_needed, tokens_needed);
  st->step = ++arena.step;
  st->recv_offset.assign(n + 1, 0);
  for (int s = 0; s < n; ++s) st->recv_offset[s + 1] = st->recv_offset[s] + count(s, me);

  MetaLayout meta{K};
  SymmetricBuffer& buf = *arena.landing;
  const size_t meta_base = arena.rows_cap * H * sizeof(float);
  RowWriter rows(buf, H * sizeof(float));
  for (int i = 0; i < n; ++i) {
    int d = (me + i) % n;
    int64_t first = 0;  // our first row in d's buffer
    for (int s = 0; s < me; ++s) first += count(s, d);
    char* peer = static_cast<char*>(buf.peer_data(d));
    auto& staging = arena.staging[d];
    if (!peer) staging.resize(count(me, d) * meta.bytes());
    int64_t row = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (!layout.in_rank(t, d)) continue;
      char* m =
          peer ? peer + meta_base + (first + row) * meta.bytes() : &staging[row * meta.bytes()];
      meta.write(m, static_cast<int32_t>(t), in.topk_idx + t * K, in.topk_weights + t * K, d,
                 per_rank);
      rows.write(d, (first + row) * H * sizeof(float), in.x + t * H);
      ++row;
    }
    if (!peer) buf.put(d, meta_base + first * meta.bytes(), staging.data(), staging.size());
  }
  rows.finish();
  for (int i = 0; i < n; ++i) buf.signal((me + i) % n, st->step);
  // Not flushed here: the puts move while other work runs, and dispatch_recv completes them.
  return DispatchHandle(std::move(st));
}

void NormalDispatcher::dispatch_recv(DispatchHandle& handle) {
  NormalState& st = state_of(handle, HandleState::kSent, "dispatch_recv");
  const int n = comm_->size(), K = config_.num_topk, E = num_local_experts();
  const int64_t H = config_.hidden;
  MetaLayout meta{K};
  Arena& arena = *st.arena;
  arena.landing->wait_signals(st.step, "dispatch");
  arena.landing->flush("dispatch");  // our puts of this batch (x rows, metadata)
  const int64_t N = st.recv_offset[n];
  const char* recv_meta =
      static_cast<const char*>(arena.landing->data()) + arena.rows_cap * H * sizeof(float);

  DispatchOutput& o = st.out;
  int32_t* topk = arena.recv_topk_idx.get(std::max<int64_t>(N, 1) * K);
  float* weights = arena.recv_topk_weights.get(std::max<int64_t>(N, 1) * K);
  int32_t* src_rank = arena.recv_src_rank.get(std::max<int64_t>(N, 1));
  int32_t* src_token = arena.recv_src_token.get(std::max<int64_t>(N, 1));
  o.num_recv_tokens_per_expert.assign(E, 0);
  for (int s = 0; s < n; ++s) {
    for (int64_t r = st.recv_offset[s]; r < st.recv_offset[s + 1]; ++r) {
      const char* row = recv_meta + r * meta.bytes();
      src_rank[r] = s;
      src_token[r] = meta.token(row);
      std::memcpy(topk + r * K, meta.local_experts(row), K * sizeof(int32_t));
      std::memcpy(weights + r * K, meta.weights(row), K * sizeof(float));
      for (int k = 0; k < K; ++k) {
        int32_t e = topk[r * K + k];
        EPS_CHECK(e >= -1 && e < E, "rank {} sent local expert {} (this rank has {})",
                  comm_->world_rank_of(s), e, E);
        if (e >= 0) ++o.num_recv_tokens_per_expert[e];
      }
    }
  }
  o.expert_row_offset.assign(E, 0);
  int64_t slots = 0;
  for (int e = 0; e < E; ++e) {
    o.expert_row_offset[e] = slots;
    slots += o.num_recv_tokens_per_expert[e];
  }
  // Expert-major rows: within an expert, by received row (source rank, token), then slot.
  int32_t* row_token = arena.expert_row_token.get(std::max<int64_t>(slots, 1));
  int32_t* row_rank = arena.row_src_rank.get(std::max<int64_t>(slots, 1));
  int32_t* row_tok = arena.row_src_token.get(std::max<int64_t>(slots, 1));
  int32_t* row_slot = arena.row_src_slot.get(std::max<int64_t>(slots, 1));
  int32_t* slot_y_row = arena.slot_y_row.get(std::max<int64_t>(N, 1) * K);
  std::vector<int64_t> cursor = o.expert_row_offset;
  for (int64_t r = 0; r < N; ++r) {
    for (int k = 0; k < K; ++k) {
      int32_t e = topk[r * K + k];
      slot_y_row[r * K + k] = -1;
      if (e < 0) continue;
      int64_t j = cursor[e]++;
      row_token[j] = static_cast<int32_t>(r);
      row_rank[j] = src_rank[r];
      row_tok[j] = src_token[r];
      row_slot[j] = k;
      slot_y_row[r * K + k] = static_cast<int32_t>(j);
    }
  }
  o.recv_x = static_cast<const float*>(arena.landing->data());
  o.num_recv_tokens = N;
  o.recv_topk_idx = topk;
  o.recv_topk_weights = weights;
  o.recv_src_rank = src_rank;
  o.recv_src_token = src_token;
  o.num_y_rows = slots;
  o.expert_row_token = row_token;
  o.row_src_rank = row_rank;
  o.row_src_token = row_tok;
  o.row_src_slot = row_slot;
  st.stage = HandleState::kReceived;
}

void NormalDispatcher::combine_send(const float* y, DispatchHandle& handle) {
  NormalState& st = state_of(handle, HandleState::kReceived, "combine_send");
  const int n = comm_->size(), me = comm_->rank(), K = config_.num_topk;
  const int64_t H = config_.hidden;
  EPS_CHECK(y || st.out.num_y_rows == 0, "combine_send needs y [{}, {}]", st.out.num_y_rows, H);
  st.y = y;
  SymmetricBuffer& buf = *st.arena->back;
  const int32_t* slot_y_row = st.arena->slot_y_row.data();
  const int32_t* src_token = st.out.recv_src_token;
  RowWriter rows(buf, H * sizeof(float));
  // Rows for our own tokens stay where they are; combine_recv reads them from y.
  for (int s = 0; s < n; ++s) {
    if (s == me) continue;
    for (int64_t r = st.recv_offset[s]; r < st.recv_offset[s + 1]; ++r) {
      for (int k = 0; k < K; ++k) {
        int32_t j = slot_y_row[r * K + k];
        if (j >= 0) rows.write(s, (int64_t(src_token[r]) * K + k) * H * sizeof(float), y + j * H);
      }
    }
  }
  rows.finish();
  for (int i = 0; i < n; ++i) buf.signal((me + i) % n, st.step);
  // Flushed by combine_recv: y must stay valid until then.
  st.stage = HandleState::kCombineSent;
}

void NormalDispatcher::combine_recv(DispatchHandle& handle, float* out) {
  NormalState& st = state_of(handle, HandleState::kCombineSent, "combine_recv");
  const int me = comm_->rank(), K = config_.num_topk, per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = st.num_tokens;
  SymmetricBuffer& buf = *st.arena->back;
  buf.wait_signals(st.step, "combine");
  buf.flush("combine");
  const float* back = static_cast<const float*>(buf.data());
  const int32_t* slot_y_row = st.arena->slot_y_row.data();
  std::vector<const float*> rows(T * K, nullptr);
  int64_t self_row = st.recv_offset[me];
  for (int64_t t = 0; t < T; ++t) {
    bool to_self = false;
    for (int k = 0; k < K; ++k) {
      int32_t e = st.topk_idx[t * K + k];
      if (e < 0) continue;
      if (e / per_rank == me) {
        rows[t * K + k] = st.y + slot_y_row[self_row * K + k] * H;
        to_self = true;
      } else {
        rows[t * K + k] = back + (t * K + k) * H;
      }
    }
    self_row += to_self;
  }
  ThreadPool::global().parallel_for(T, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      weighted_sum_row(rows.data() + t * K, st.topk_weights.data() + t * K, K, H, out + t * H);
    }
  });
  st.stage = HandleState::kDone;
  st.arena->owner = nullptr;
}

}  // namespace epserve
