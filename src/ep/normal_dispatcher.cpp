#include "ep/normal_dispatcher.h"

#include <exception>

#include "core/error.h"
#include "core/thread_pool.h"

namespace epserve {
namespace {

struct NormalState : HandleState {
  NormalDispatcher::Arena* arena = nullptr;
  int64_t hidden = 0;
  int rank = 0;
  int num_topk = 0;
  uint64_t step = 0;
  const float* x = nullptr;
  std::vector<int64_t> counts;       // [source][destination] tokens, then [source] num_tokens
  std::vector<int64_t> recv_offset;  // [source + 1] first row from each source in recv_x
  // Region layout (max_tokens_per_rank given): source s writes row i at row s * region + i of
  // our buffer, and its count into its header slot (headers_of); 0 with a count round.
  int64_t region = 0;
  std::vector<int64_t> sent_counts;  // [destination] rows we send
  // [destination] where its combine rows for our tokens start in our back buffer: the
  // destinations' (token, slot) rows in rank order, each in (token, slot) order.
  std::vector<int64_t> combine_base;
  // [destination] (rows we send, combine_base): the header each destination gets (put
  // sources: kept until flush).
  std::vector<int64_t> sent_header;
  std::vector<int64_t> peer_combine_base;  // [source] where our combine rows go in its buffer
  std::vector<int32_t> self_tokens;        // our tokens that go to our own experts (region layout)
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

// The (count, combine base) pair each source wrote into our landing buffer, after the metadata.
const int64_t* headers_of(const NormalDispatcher::Arena& arena, const float* landing, int64_t H,
                          int K) {
  return reinterpret_cast<const int64_t*>(
      reinterpret_cast<const char*>(landing + arena.rows_cap * H) +
      arena.rows_cap * MetaLayout{K}.bytes());
}

// Region layout, after every source signalled: reads the counts the sources sent, makes the
// received rows one block ordered by source (recv_x), and returns its first row. Source s wrote
// its rows at row s * region. With s0 the first other source, the block starts where s0's rows
// stay: sources after s0 move down (never onto rows not yet moved, as each count is at most
// region; with two ranks nothing moves), and our own rows are copied in from x.
int64_t place_region_rows(NormalState& st, float* landing) {
  const int n = static_cast<int>(st.sent_counts.size());
  const int me = st.rank;
  const int64_t M = st.region, H = st.hidden;
  const int64_t* header = headers_of(*st.arena, landing, H, st.num_topk);
  st.recv_offset.assign(n + 1, 0);
  for (int s = 0; s < n; ++s) {
    const int64_t c = s == me ? static_cast<int64_t>(st.self_tokens.size()) : header[2 * s];
    EPS_CHECK(c >= 0 && c <= M, "normal dispatch: source {} sent {} rows (at most {})", s, c, M);
    st.recv_offset[s + 1] = st.recv_offset[s] + c;
  }
  const int s0 = me == 0 ? 1 : 0;
  const int64_t base = n == 1 ? 0 : s0 * M - st.recv_offset[s0];
  for (int s = s0 + 1; s < n; ++s) {
    if (s == me) continue;
    const int64_t to = base + st.recv_offset[s];
    if (to != s * M) {
      std::memmove(landing + to * H, landing + s * M * H,
                   (st.recv_offset[s + 1] - st.recv_offset[s]) * H * sizeof(float));
    }
  }
  std::vector<std::pair<float*, const float*>> own;
  float* to = landing + (base + st.recv_offset[me]) * H;
  for (size_t i = 0; i < st.self_tokens.size(); ++i) {
    own.push_back({to + i * H, st.x + int64_t(st.self_tokens[i]) * H});
  }
  copy_rows(own, H * sizeof(float));
  return base;
}

}  // namespace

NormalDispatcher::NormalDispatcher(std::shared_ptr<Communicator> comm, const DispatchConfig& config)
    : Dispatcher(std::move(comm), config) {
  for (Arena& arena : arenas_) {
    arena.staging.resize(comm_->size());
    arena.row_staging.resize(comm_->size());
  }
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
    arena.landing = std::make_unique<SymmetricBuffer>(
        *comm_, arena.rows_cap * row_bytes + comm_->size() * 2 * sizeof(int64_t));
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
  st->rank = me;
  st->num_topk = K;
  st->num_tokens = T;
  st->x = in.x;
  st->topk_idx.assign(in.topk_idx, in.topk_idx + T * K);
  st->topk_weights.assign(in.topk_weights, in.topk_weights + T * K);

  // Where our rows go in each receiver's buffer: after the rows of the sources before us, which
  // a count round tells (row s of its matrix is what rank s sends to each rank, then its batch
  // size); or, given the agreed most tokens per rank, at our own region, the count sent along.
  std::vector<int64_t> first(n, 0);  // [destination] our first row in its buffer
  st->sent_counts.assign(n, 0);
  for (int d = 0; d < n; ++d) st->sent_counts[d] = layout.num_tokens_per_rank[d];
  std::vector<int64_t> slots(n, 0);  // (token, slot) pairs per destination: the layout's count
  for (int d = 0; d < n; ++d) {
    for (int64_t e = d * per_rank; e < (d + 1) * per_rank; ++e) {
      slots[d] += layout.num_tokens_per_expert[e];
    }
  }
  st->combine_base.assign(n, 0);
  st->sent_header.assign(2 * n, 0);
  int64_t next = 0;
  for (int d = 0; d < n; ++d) {
    st->combine_base[d] = next;
    if (d != me) next += slots[d];
    st->sent_header[2 * d] = st->sent_counts[d];
    st->sent_header[2 * d + 1] = st->combine_base[d];
  }
  if (in.max_tokens_per_rank > 0) {
    const int64_t M = in.max_tokens_per_rank;
    EPS_CHECK(T <= M, "normal dispatch: {} tokens on rank {}, above the agreed most tokens {}", T,
              comm.world_rank_of(me), M);
    reserve(arena, n * M, M);
    st->region = M;
    for (int d = 0; d < n; ++d) first[d] = me * M;
  } else {
    std::vector<int64_t> mine(st->sent_counts);
    mine.push_back(T);
    st->counts.resize(n * (n + 1));
    comm.allgather(mine.data(), (n + 1) * sizeof(int64_t), st->counts.data());
    auto count = [&](int s, int d) { return st->counts[s * (n + 1) + d]; };
    int64_t rows_needed = 0, tokens_needed = 0;
    for (int d = 0; d < n; ++d) {
      int64_t rows = 0;
      for (int s = 0; s < n; ++s) rows += count(s, d);
      rows_needed = std::max(rows_needed, rows);
      tokens_needed = std::max(tokens_needed, count(d, n));
      for (int s = 0; s < me; ++s) first[d] += count(s, d);
    }
    reserve(arena, rows_needed, tokens_needed);
    st->recv_offset.assign(n + 1, 0);
    for (int s = 0; s < n; ++s) st->recv_offset[s + 1] = st->recv_offset[s] + count(s, me);
  }
  st->step = ++arena.step;

  MetaLayout meta{K};
  SymmetricBuffer& buf = *arena.landing;
  const size_t meta_base = arena.rows_cap * H * sizeof(float);
  const size_t header_base = meta_base + arena.rows_cap * meta.bytes();
  RowWriter rows(buf, H * sizeof(float), arena.row_staging);
  for (int i = 0; i < n; ++i) {
    int d = (me + i) % n;
    // In the region layout our rows for ourselves are copied from x by dispatch_recv, into the
    // place the other sources' counts decide; their metadata goes into our own region here.
    const bool self_later = st->region > 0 && d == me;
    char* peer = static_cast<char*>(buf.peer_data(d));
    auto& staging = arena.staging[d];
    if (!peer) staging.resize(st->sent_counts[d] * meta.bytes());
    int64_t row = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (!layout.in_rank(t, d)) continue;
      char* m =
          peer ? peer + meta_base + (first[d] + row) * meta.bytes() : &staging[row * meta.bytes()];
      meta.write(m, static_cast<int32_t>(t), in.topk_idx + t * K, in.topk_weights + t * K, d,
                 per_rank);
      if (self_later) {
        st->self_tokens.push_back(static_cast<int32_t>(t));
      } else {
        rows.write(d, (first[d] + row) * H * sizeof(float), in.x + t * H);
      }
      ++row;
    }
    if (!peer) buf.put(d, meta_base + first[d] * meta.bytes(), staging.data(), staging.size());
    if (d != me) {
      buf.put(d, header_base + me * 2 * sizeof(int64_t), &st->sent_header[2 * d],
              2 * sizeof(int64_t));
    }
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
  float* landing = static_cast<float*>(arena.landing->data());
  const char* recv_meta = reinterpret_cast<const char*>(landing + arena.rows_cap * H);
  const int64_t base = st.region > 0 ? place_region_rows(st, landing) : 0;
  const int64_t* header = headers_of(arena, landing, H, K);
  st.peer_combine_base.assign(n, 0);
  for (int s = 0; s < n; ++s) st.peer_combine_base[s] = header[2 * s + 1];
  const int64_t N = st.recv_offset[n];

  DispatchOutput& o = st.out;
  int32_t* topk = arena.recv_topk_idx.get(std::max<int64_t>(N, 1) * K);
  float* weights = arena.recv_topk_weights.get(std::max<int64_t>(N, 1) * K);
  int32_t* src_rank = arena.recv_src_rank.get(std::max<int64_t>(N, 1));
  int32_t* src_token = arena.recv_src_token.get(std::max<int64_t>(N, 1));
  o.num_recv_tokens_per_expert.assign(E, 0);
  for (int s = 0; s < n; ++s) {
    // Source s's metadata rows: in its region, or from recv_offset[s] on.
    const int64_t meta_first = st.region > 0 ? s * st.region : st.recv_offset[s];
    for (int64_t r = st.recv_offset[s]; r < st.recv_offset[s + 1]; ++r) {
      const char* row = recv_meta + (meta_first + r - st.recv_offset[s]) * meta.bytes();
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
  o.recv_x = landing + base * H;
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
  RowWriter rows(buf, H * sizeof(float), st.arena->row_staging);
  // Rows for our own tokens stay where they are; combine_recv reads them from y. Source s's
  // rows go in (token, slot) order from where s said (one block: one put).
  for (int s = 0; s < n; ++s) {
    if (s == me) continue;
    int64_t at = st.peer_combine_base[s];
    for (int64_t r = st.recv_offset[s]; r < st.recv_offset[s + 1]; ++r) {
      for (int k = 0; k < K; ++k) {
        int32_t j = slot_y_row[r * K + k];
        if (j >= 0) rows.write(s, at++ * H * sizeof(float), y + j * H);
      }
    }
  }
  rows.finish();
  for (int i = 0; i < n; ++i) buf.signal((me + i) % n, st.step);
  // Flushed by combine_recv: y must stay valid until then.
  st.stage = HandleState::kCombineSent;
}

void NormalDispatcher::combine_wait(DispatchHandle& handle) {
  NormalState& st = state_of(handle, HandleState::kCombineSent, "combine_wait");
  if (st.combine_arrived) return;
  st.arena->back->wait_signals(st.step, "combine");
  st.arena->back->flush("combine");
  st.combine_arrived = true;
}

void NormalDispatcher::combine_recv(DispatchHandle& handle, float* out) {
  combine_wait(handle);
  NormalState& st = state_of(handle, HandleState::kCombineSent, "combine_recv");
  const int me = comm_->rank(), K = config_.num_topk, per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = st.num_tokens;
  SymmetricBuffer& buf = *st.arena->back;
  const float* back = static_cast<const float*>(buf.data());
  const int32_t* slot_y_row = st.arena->slot_y_row.data();
  std::vector<const float*> rows(T * K, nullptr);
  std::vector<int64_t> next = st.combine_base;  // [rank] its next row in back
  int64_t self_row = st.recv_offset[me];
  for (int64_t t = 0; t < T; ++t) {
    bool to_self = false;
    for (int k = 0; k < K; ++k) {
      int32_t e = st.topk_idx[t * K + k];
      if (e < 0) continue;
      const int rank = e / per_rank;
      if (rank == me) {
        rows[t * K + k] = st.y + slot_y_row[self_row * K + k] * H;
        to_self = true;
      } else {
        rows[t * K + k] = back + next[rank]++ * H;
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
