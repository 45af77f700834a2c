// Collectives of Communicator, built on tagged UCX messages. Messages to this rank itself are
// plain copies. Reductions fold contributions in rank order 0..n-1 (deterministic).
#include <algorithm>
#include <cstring>

#include "comm/communicator.h"
#include "core/error.h"

namespace epserve {
namespace {

// Up to this many bytes from all other ranks together, allreduce gathers everything and folds
// locally (one round); above, it reduce-scatters then allgathers (two rounds, 2x the bytes).
constexpr size_t kAllgatherAllreduceBytes = 256 * 1024;

template <class T>
T apply(ReduceOp op, T a, T b) {
  return op == ReduceOp::kSum ? a + b : (a < b ? b : a);
}

}  // namespace

template <class T>
void Communicator::fold(T* out, const T* blocks, size_t count, size_t stride, ReduceOp op) const {
  if (out != blocks) std::memcpy(out, blocks, count * sizeof(T));
  for (int r = 1; r < size(); ++r) {
    const T* block = blocks + r * stride;
    for (size_t i = 0; i < count; ++i) out[i] = apply(op, out[i], block[i]);
  }
}

void Communicator::barrier() {
  OpName name(*this, "barrier");
  int n = size();
  uint32_t rounds = 0;
  for (int k = 1; k < n; k <<= 1) ++rounds;
  uint32_t seq = next_collective_tags(std::max<uint32_t>(rounds, 1));
  char dummy = 0;
  uint32_t round = 0;
  for (int k = 1; k < n; k <<= 1, ++round) {
    std::vector<Request> reqs;
    reqs.push_back(irecv_tagged((rank_ - k + n) % n, &dummy, 0, seq + round, false));
    reqs.push_back(isend_tagged((rank_ + k) % n, &dummy, 0, seq + round, false));
    wait_all(reqs, "barrier");
  }
}

void Communicator::broadcast(void* data, size_t bytes, int root) {
  OpName name(*this, "broadcast");
  int n = size();
  EPS_CHECK(root >= 0 && root < n, "broadcast root {} outside the communicator (size {})", root, n);
  uint32_t seq = next_collective_tags(1);
  if (n == 1) return;
  // Binomial tree over ranks relative to the root.
  int vr = (rank_ - root + n) % n;
  int mask = 1;
  while (mask < n) {
    if (vr & mask) {
      std::vector<Request> reqs;
      reqs.push_back(irecv_tagged((vr - mask + root) % n, data, bytes, seq, false));
      wait_all(reqs, "broadcast");
      break;
    }
    mask <<= 1;
  }
  std::vector<Request> reqs;
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (vr + mask < n)
      reqs.push_back(isend_tagged((vr + mask + root) % n, data, bytes, seq, false));
  }
  wait_all(reqs, "broadcast");
}

void Communicator::allgather(const void* send, size_t bytes, void* recv) {
  OpName name(*this, "allgather");
  std::vector<size_t> sizes(size(), bytes);
  allgatherv(send, bytes, recv, sizes);
}

void Communicator::allgatherv(const void* send, size_t bytes, void* recv,
                              const std::vector<size_t>& recv_bytes) {
  OpName name(*this, "allgatherv");
  int n = size();
  EPS_CHECK(recv_bytes.size() == size_t(n) && recv_bytes[rank_] == bytes,
            "allgatherv: recv_bytes must have {} entries with entry {} = {} (this rank's size)", n,
            rank_, bytes);
  uint32_t seq = next_collective_tags(1);
  auto* out = static_cast<char*>(recv);
  std::vector<size_t> offset(n + 1, 0);
  for (int r = 0; r < n; ++r) offset[r + 1] = offset[r] + recv_bytes[r];
  std::vector<Request> reqs;
  for (int i = 1; i < n; ++i) {
    int from = (rank_ - i + n) % n;
    if (recv_bytes[from])
      reqs.push_back(irecv_tagged(from, out + offset[from], recv_bytes[from], seq, false));
  }
  for (int i = 1; i < n && bytes; ++i) {
    reqs.push_back(isend_tagged((rank_ + i) % n, send, bytes, seq, false));
  }
  if (bytes && out + offset[rank_] != send) std::memcpy(out + offset[rank_], send, bytes);
  wait_all(reqs, "allgather");
}

void Communicator::all_to_all(const void* send, void* recv, size_t bytes) {
  OpName name(*this, "all_to_all");
  std::vector<size_t> sizes(size(), bytes);
  all_to_allv(send, sizes, recv, sizes);
}

void Communicator::all_to_allv(const void* send, const std::vector<size_t>& send_bytes, void* recv,
                               const std::vector<size_t>& recv_bytes) {
  OpName name(*this, "allgatherv");
  int n = size();
  EPS_CHECK(send_bytes.size() == size_t(n) && recv_bytes.size() == size_t(n),
            "all_to_allv: send_bytes and recv_bytes need {} entries, found {} and {}", n,
            send_bytes.size(), recv_bytes.size());
  EPS_CHECK(send_bytes[rank_] == recv_bytes[rank_],
            "all_to_allv: this rank sends itself {} bytes but expects {}", send_bytes[rank_],
            recv_bytes[rank_]);
  uint32_t seq = next_collective_tags(1);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  std::vector<size_t> soff(n + 1, 0), roff(n + 1, 0);
  for (int r = 0; r < n; ++r) {
    soff[r + 1] = soff[r] + send_bytes[r];
    roff[r + 1] = roff[r] + recv_bytes[r];
  }
  std::vector<Request> reqs;
  for (int i = 1; i < n; ++i) {
    int from = (rank_ - i + n) % n;
    if (recv_bytes[from])
      reqs.push_back(irecv_tagged(from, out + roff[from], recv_bytes[from], seq, false));
  }
  for (int i = 1; i < n; ++i) {
    int to = (rank_ + i) % n;
    if (send_bytes[to]) reqs.push_back(isend_tagged(to, in + soff[to], send_bytes[to], seq, false));
  }
  if (send_bytes[rank_]) std::memmove(out + roff[rank_], in + soff[rank_], send_bytes[rank_]);
  wait_all(reqs, "all_to_all");
}

template <class T>
void Communicator::reduce_scatter(const T* send, T* recv, size_t count, ReduceOp op) {
  OpName name(*this, "reduce_scatter");
  int n = size();
  std::vector<T> pieces(n * count);
  std::vector<size_t> send_bytes(n, count * sizeof(T));
  all_to_allv(send, send_bytes, pieces.data(), send_bytes);
  fold(recv, pieces.data(), count, count, op);
}

template <class T>
void Communicator::allreduce(T* data, size_t count, ReduceOp op) {
  OpName name(*this, "allreduce");
  int n = size();
  if (n == 1 || count == 0) {
    next_collective_tags(1);
    return;
  }
  if (count * sizeof(T) * (n - 1) <= kAllgatherAllreduceBytes || count < size_t(n)) {
    std::vector<T> all(n * count);
    allgather(data, count * sizeof(T), all.data());
    fold(data, all.data(), count, count, op);
    return;
  }
  // Reduce-scatter by chunks: rank c owns [bound(c), bound(c+1)).
  auto bound = [&](int c) { return count * c / n; };
  size_t my_len = bound(rank_ + 1) - bound(rank_);
  std::vector<size_t> send_bytes(n), recv_bytes(n, my_len * sizeof(T));
  for (int c = 0; c < n; ++c) send_bytes[c] = (bound(c + 1) - bound(c)) * sizeof(T);
  std::vector<T> pieces(n * my_len);
  all_to_allv(data, send_bytes, pieces.data(), recv_bytes);
  fold(data + bound(rank_), pieces.data(), my_len, my_len, op);
  // Allgather of the reduced chunks, in place.
  allgatherv(data + bound(rank_), my_len * sizeof(T), data, send_bytes);
}

template void Communicator::allreduce<float>(float*, size_t, ReduceOp);
template void Communicator::allreduce<double>(double*, size_t, ReduceOp);
template void Communicator::allreduce<int64_t>(int64_t*, size_t, ReduceOp);
template void Communicator::reduce_scatter<float>(const float*, float*, size_t, ReduceOp);
template void Communicator::reduce_scatter<double>(const double*, double*, size_t, ReduceOp);
template void Communicator::reduce_scatter<int64_t>(const int64_t*, int64_t*, size_t, ReduceOp);

}  // namespace epserve
