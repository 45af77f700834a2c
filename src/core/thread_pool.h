// A fixed pool of worker threads for data-parallel loops. parallel_for splits [0, n) into
// contiguous chunks, one per thread, and runs them with the calling thread taking part.
// Workers spin briefly for new work and then block, so idle ranks do not hold cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace epserve {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // fn(begin, end) is called on disjoint ranges covering [0, n). Chunks are at least
  // min_chunk long, so small loops stay on the calling thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                    int64_t min_chunk = 1);

  // The process-wide pool used by the kernels; created on first use.
  static ThreadPool& global();
  // Sets the size of the global pool (before first use, or it is rebuilt).
  static void set_global_threads(int num_threads);

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t task_n_ = 0;
  int task_chunks_ = 0;
};

// Cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

}  // namespace epserve
