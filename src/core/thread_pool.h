// A fixed pool of worker threads for data-parallel loops. parallel_for splits [0, n) into
// contiguous chunks, at most one per thread, and every thread that is free (the caller
// included) claims the next unclaimed chunk: on a shared machine a worker that is not running
// holds up nobody, the caller runs its chunk itself. Workers spin briefly for new work and then
// block, so idle ranks do not hold cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
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

  // fn(begin, end) is called on disjoint ranges covering [0, n): up to chunks_per_thread
  // chunks per thread (more chunks balance uneven progress: a thread that falls behind leaves
  // its unclaimed chunks to the others), each at least min_chunk long, so small loops stay on
  // the calling thread. Which thread runs a chunk is not fixed. An exception from a chunk is
  // rethrown here once all chunks have finished.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                    int64_t min_chunk = 1, int chunks_per_thread = 1);

  // The process-wide pool used by the kernels; created on first use.
  static ThreadPool& global();
  // Sets the size of the global pool (before first use, or it is rebuilt).
  static void set_global_threads(int num_threads);

 private:
  void worker_loop();
  // Claims and runs chunks of generation `gen` until none is left.
  void run_chunks(uint32_t gen, const std::function<void(int64_t, int64_t)>* fn, int64_t n,
                  int chunks);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int sleepers_ = 0;  // workers blocked on wake_ (guarded by mutex_)
  std::atomic<uint32_t> generation_{0};
  // (generation << 32) | next unclaimed chunk: a claim only succeeds for the current task.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};  // chunks of the current task finished
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t task_n_ = 0;
  int task_chunks_ = 0;
  std::exception_ptr error_;  // the first exception a chunk threw (guarded by mutex_)
};

// Cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

}  // namespace epserve
