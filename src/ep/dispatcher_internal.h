// Shared pieces of the two dispatchers (internal to src/ep): the per-batch handle state, the
// metadata row that travels with each token, and grow-only scratch buffers.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "comm/symmetric_buffer.h"
#include "ep/dispatcher.h"

namespace epserve {

struct HandleState {
  virtual ~HandleState() = default;
  virtual float* y_buffer() = 0;

  enum Stage { kSent, kReceived, kCombineSent, kDone };
  Stage stage = kSent;
  bool combine_arrived = false;  // combine_wait ran
  int buffer = 0;
  int64_t num_tokens = 0;
  std::vector<int32_t> topk_idx;    // [num_tokens, K] copy of the input
  std::vector<float> topk_weights;  // [num_tokens, K]
  DispatchOutput out;
};

// Metadata of one token sent to one rank: the source token index, then for each top-k slot the
// local expert index on that rank (-1 when the slot's expert is elsewhere), then the weights.
struct MetaLayout {
  int num_topk;
  size_t bytes() const { return (sizeof(int32_t) * (1 + 2 * size_t(num_topk)) + 7) / 8 * 8; }
  void write(char* row, int32_t token, const int32_t* topk_idx, const float* weights, int dest_rank,
             int experts_per_rank) const {
    auto* p = reinterpret_cast<int32_t*>(row);
    p[0] = token;
    for (int k = 0; k < num_topk; ++k) {
      int32_t e = topk_idx[k];
      p[1 + k] = (e >= 0 && e / experts_per_rank == dest_rank) ? e % experts_per_rank : -1;
    }
    std::memcpy(p + 1 + num_topk, weights, sizeof(float) * num_topk);
  }
  int32_t token(const char* row) const { return reinterpret_cast<const int32_t*>(row)[0]; }
  const int32_t* local_experts(const char* row) const {
    return reinterpret_cast<const int32_t*>(row) + 1;
  }
  const float* weights(const char* row) const {
    return reinterpret_cast<const float*>(row) + 1 + num_topk;
  }
};

// A buffer that grows to the largest size asked for and is reused; contents are not initialised.
template <class T>
class Scratch {
 public:
  T* get(size_t n) {
    if (n > capacity_) {
      data_.reset(new T[n]);
      capacity_ = n;
    }
    return data_.get();
  }
  T* data() { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
  size_t capacity_ = 0;
};

// From this many bytes on, copy_rows uses streaming stores.
inline constexpr size_t kStreamCopyBytes = 16u << 20;

// Copies rows in parallel: dst[i] <- src[i], each `bytes` long; the copies are visible to other
// threads and processes (fenced) when it returns.
void copy_rows(const std::vector<std::pair<float*, const float*>>& rows, size_t bytes);

// Writes rows into other ranks' symmetric buffers: plain copies (gathered, then done in parallel
// by finish()) where the peer's buffer is mapped here; otherwise finish() gathers a peer's rows
// into staging[peer] and puts every run of rows that are contiguous in the peer's buffer as one
// UCX put (a put per row costs a request and a socket send each over TCP). staging must stay
// unchanged until the buffer's flush().
class RowWriter {
 public:
  RowWriter(SymmetricBuffer& buffer, size_t row_bytes, std::vector<std::vector<char>>& staging)
      : buf_(buffer), row_bytes_(row_bytes), staging_(staging), remote_(staging.size()) {}
  void write(int peer, size_t offset, const float* src) {
    if (char* base = static_cast<char*>(buf_.peer_data(peer))) {
      direct_.push_back({reinterpret_cast<float*>(base + offset), src});
    } else {
      remote_[peer].push_back({offset, src});
    }
  }
  // Completes the direct copies and starts the puts; puts complete at the buffer's flush().
  void finish();

 private:
  SymmetricBuffer& buf_;
  size_t row_bytes_;
  std::vector<std::vector<char>>& staging_;
  std::vector<std::pair<float*, const float*>> direct_;
  std::vector<std::vector<std::pair<size_t, const float*>>> remote_;  // [peer] (offset, source)
};

}  // namespace epserve

namespace epserve {

// Anonymous memory reserved up front and backed by pages only where it is written: the
// low-latency receive layout [experts, capacity * ranks, hidden] is large and mostly unused.
class LazyBuffer {
 public:
  LazyBuffer() = default;
  explicit LazyBuffer(size_t bytes);
  ~LazyBuffer();
  LazyBuffer(LazyBuffer&& other) noexcept { *this = std::move(other); }
  LazyBuffer& operator=(LazyBuffer&& other) noexcept;
  float* data() const { return static_cast<float*>(data_); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace epserve
