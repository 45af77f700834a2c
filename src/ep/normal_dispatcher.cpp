#include "ep/normal_dispatcher.h"

#include "core/error.h"
#include "core/thread_pool.h"

namespace epserve {
namespace {

enum TagKind : uint32_t { kCount = 0, kRows, kMeta, kCombine, kNumKinds };
constexpr uint32_t kTagSpace = (1u << 23) / kNumKinds;

struct NormalState : HandleState {
  NormalDispatcher::Arena* arena = nullptr;
  int64_t hidden = 0;
  uint32_t tag = 0;
  const float* x = nullptr;
  std::vector<std::vector<const void*>> send_rows;  // [rank] rows of x sent there
  std::vector<std::vector<char>> send_meta;         // [rank] packed metadata
  std::vector<int64_t> send_count, recv_count;      // tokens to / from each rank
  std::vector<int64_t> recv_offset;                 // [rank + 1] first recv row of each source
  std::vector<int64_t> slots_on;                    // [rank] (token, slot) pairs of ours there
  std::vector<Request> count_reqs, reqs;
  const float* y = nullptr;
  std::vector<std::vector<const void*>> combine_rows;  // [rank] rows of y sent back

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
    : Dispatcher(std::move(comm), config) {}

DispatchHandle NormalDispatcher::dispatch_send(const DispatchInput& in) {
  DispatchLayout storage;
  const DispatchLayout& layout = prepare(in, storage);
  Communicator& comm = *comm_;
  const int n = comm.size(), me = comm.rank(), K = config_.num_topk;
  const int per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = in.num_tokens;
  Arena& arena = arenas_[next_arena_];
  EPS_CHECK(!arena.owner,
            "normal dispatch: both buffers are in use by earlier dispatches that were "
            "not combined; at most two batches can be in flight");
  auto st = std::make_unique<NormalState>();
  st->buffer = next_arena_;
  next_arena_ ^= 1;
  arena.owner = st.get();
  st->arena = &arena;
  st->hidden = H;
  st->num_tokens = T;
  st->x = in.x;
  st->tag = (next_tag_++ % kTagSpace) * kNumKinds;
  st->topk_idx.assign(in.topk_idx, in.topk_idx + T * K);
  st->topk_weights.assign(in.topk_weights, in.topk_weights + T * K);

  MetaLayout meta{K};
  st->send_rows.resize(n);
  st->send_meta.resize(n);
  st->send_count.assign(n, 0);
  st->recv_count.assign(n, 0);
  st->slots_on.assign(n, 0);
  for (int d = 0; d < n; ++d) {
    st->send_meta[d].resize(layout.num_tokens_per_rank[d] * meta.bytes());
    st->send_rows[d].reserve(layout.num_tokens_per_rank[d]);
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < K; ++k) {
      int32_t e = in.topk_idx[t * K + k];
      if (e >= 0) ++st->slots_on[e / per_rank];
    }
    for (int d = 0; d < n; ++d) {
      if (!layout.in_rank(t, d)) continue;
      int64_t i = st->send_count[d]++;
      st->send_rows[d].push_back(in.x + t * H);
      meta.write(st->send_meta[d].data() + i * meta.bytes(), static_cast<int32_t>(t),
                 in.topk_idx + t * K, in.topk_weights + t * K, d, per_rank);
    }
  }
  st->recv_count[me] = st->send_count[me];
  for (int i = 1; i < n; ++i) {
    int from = (me - i + n) % n, to = (me + i) % n;
    st->count_reqs.push_back(comm.irecv(from, &st->recv_count[from], 8, st->tag + kCount));
    st->count_reqs.push_back(comm.isend(to, &st->send_count[to], 8, st->tag + kCount));
  }
  for (int i = 1; i < n; ++i) {
    int to = (me + i) % n;
    if (st->send_count[to] == 0) continue;
    st->reqs.push_back(comm.isend_rows(to, st->send_rows[to].data(), st->send_rows[to].size(),
                                       H * sizeof(float), st->tag + kRows));
    st->reqs.push_back(
        comm.isend(to, st->send_meta[to].data(), st->send_meta[to].size(), st->tag + kMeta));
  }
  return DispatchHandle(std::move(st));
}

void NormalDispatcher::dispatch_recv(DispatchHandle& handle) {
  NormalState& st = state_of(handle, HandleState::kSent, "dispatch_recv");
  Communicator& comm = *comm_;
  const int n = comm.size(), me = comm.rank(), K = config_.num_topk, E = num_local_experts();
  const int64_t H = config_.hidden;
  MetaLayout meta{K};
  Arena& arena = *st.arena;
  comm.wait_all(st.count_reqs, "dispatch count exchange");
  st.recv_offset.assign(n + 1, 0);
  for (int s = 0; s < n; ++s) st.recv_offset[s + 1] = st.recv_offset[s] + st.recv_count[s];
  const int64_t N = st.recv_offset[n];
  float* recv_x = arena.recv_x.get(std::max<int64_t>(N, 1) * H);
  char* recv_meta = arena.recv_meta.get(std::max<int64_t>(N, 1) * meta.bytes());
  for (int i = 1; i < n; ++i) {
    int from = (me - i + n) % n;
    int64_t count = st.recv_count[from], row = st.recv_offset[from];
    if (count == 0) continue;
    st.reqs.push_back(
        comm.irecv(from, recv_x + row * H, count * H * sizeof(float), st.tag + kRows));
    st.reqs.push_back(
        comm.irecv(from, recv_meta + row * meta.bytes(), count * meta.bytes(), st.tag + kMeta));
  }
  std::vector<std::pair<float*, const float*>> self_rows;
  for (int64_t i = 0; i < st.send_count[me]; ++i) {
    self_rows.push_back(
        {recv_x + (st.recv_offset[me] + i) * H, static_cast<const float*>(st.send_rows[me][i])});
  }
  copy_rows(self_rows, H * sizeof(float));
  std::memcpy(recv_meta + st.recv_offset[me] * meta.bytes(), st.send_meta[me].data(),
              st.send_meta[me].size());
  comm.wait_all(st.reqs, "dispatch");

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
                  comm.world_rank_of(s), e, E);
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
  o.recv_x = recv_x;
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
  Communicator& comm = *comm_;
  const int n = comm.size(), me = comm.rank(), K = config_.num_topk;
  const int64_t H = config_.hidden;
  EPS_CHECK(y || st.out.num_y_rows == 0, "combine_send needs y [{}, {}]", st.out.num_y_rows, H);
  st.y = y;
  const int32_t* slot_y_row = st.arena->slot_y_row.data();
  // Rows back to each source, in the order it expects: its token order, then slot order.
  st.combine_rows.assign(n, {});
  for (int i = 1; i < n; ++i) {
    int to = (me + i) % n;
    auto& rows = st.combine_rows[to];
    for (int64_t r = st.recv_offset[to]; r < st.recv_offset[to + 1]; ++r) {
      for (int k = 0; k < K; ++k) {
        int32_t j = slot_y_row[r * K + k];
        if (j >= 0) rows.push_back(y + j * H);
      }
    }
    if (!rows.empty()) {
      st.reqs.push_back(
          comm.isend_rows(to, rows.data(), rows.size(), H * sizeof(float), st.tag + kCombine));
    }
  }
  int64_t total = 0;
  for (int d = 0; d < n; ++d) total += d == me ? 0 : st.slots_on[d];
  float* back = st.arena->combine_rows.get(std::max<int64_t>(total, 1) * H);
  int64_t offset = 0;
  for (int d = 0; d < n; ++d) {
    if (d == me || st.slots_on[d] == 0) continue;
    st.reqs.push_back(
        comm.irecv(d, back + offset * H, st.slots_on[d] * H * sizeof(float), st.tag + kCombine));
    offset += st.slots_on[d];
  }
  st.stage = HandleState::kCombineSent;
}

void NormalDispatcher::combine_recv(DispatchHandle& handle, float* out) {
  NormalState& st = state_of(handle, HandleState::kCombineSent, "combine_recv");
  Communicator& comm = *comm_;
  const int n = comm.size(), me = comm.rank(), K = config_.num_topk, per_rank = num_local_experts();
  const int64_t H = config_.hidden, T = st.num_tokens;
  comm.wait_all(st.reqs, "combine");
  const float* back = st.arena->combine_rows.data();
  const int32_t* slot_y_row = st.arena->slot_y_row.data();
  std::vector<int64_t> cursor(n, 0);
  for (int d = 0, offset = 0; d < n; ++d) {
    cursor[d] = offset;
    if (d != me) offset += st.slots_on[d];
  }
  std::vector<const float*> rows(T * K, nullptr);
  int64_t self_row = st.recv_offset[me];
  for (int64_t t = 0; t < T; ++t) {
    bool to_self = false;
    for (int k = 0; k < K; ++k) {
      int32_t e = st.topk_idx[t * K + k];
      if (e < 0) continue;
      int d = e / per_rank;
      if (d == me) {
        rows[t * K + k] = st.y + slot_y_row[self_row * K + k] * H;
        to_self = true;
      } else {
        rows[t * K + k] = back + (cursor[d]++) * H;
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
