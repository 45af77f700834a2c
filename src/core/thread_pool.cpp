#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <utility>

namespace epserve {
namespace {

std::unique_ptr<ThreadPool>& global_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}

// Set while a thread runs a parallel_for chunk: nested loops then run inline, so kernels that
// parallelise internally can be called from inside another parallel loop.
thread_local bool t_inside_pool_task = false;

void run_chunk(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int chunks, int index) {
  int64_t begin = n * index / chunks;
  int64_t end = n * (index + 1) / chunks;
  if (begin >= end) return;
  struct Inside {
    bool was = t_inside_pool_task;
    Inside() { t_inside_pool_task = true; }
    ~Inside() { t_inside_pool_task = was; }
  } inside;
  fn(begin, end);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long a worker spins for the next task before blocking.
constexpr auto kWorkerSpin = std::chrono::microseconds(50);

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(uint32_t gen, const std::function<void(int64_t, int64_t)>* fn,
                            int64_t n, int chunks) {
  uint64_t state = claim_.load(std::memory_order_acquire);
  while (static_cast<uint32_t>(state >> 32) == gen &&
         static_cast<int>(state & 0xffffffffu) < chunks) {
    if (!claim_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) continue;
    try {
      run_chunk(*fn, n, chunks, static_cast<int>(state & 0xffffffffu));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    done_.fetch_add(1, std::memory_order_acq_rel);
    state = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t min_chunk, int chunks_per_thread) {
  if (n <= 0) return;
  int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  int64_t wanted = int64_t{num_threads_} * std::max(1, chunks_per_thread);
  int chunks = static_cast<int>(std::min<int64_t>(wanted, max_chunks));
  if (num_threads_ <= 1 || chunks <= 1 || t_inside_pool_task) {
    fn(0, n);
    return;
  }
  uint32_t gen;
  bool notify;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    gen = generation_.load(std::memory_order_relaxed) + 1;
    task_ = &fn;
    task_n_ = n;
    task_chunks_ = chunks;
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    claim_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    generation_.store(gen, std::memory_order_release);
    notify = sleepers_ > 0;
  }
  if (notify) wake_.notify_all();
  run_chunks(gen, &fn, n, chunks);
  // Chunks claimed by workers may still run: spin (they are usually short), then yield.
  for (int spin = 0; done_.load(std::memory_order_acquire) != chunks; ++spin) {
    if (spin < 4000) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop() {
  uint32_t seen = 0;
  while (true) {
    // Spin a little for the next task (reading the clock only now and then), then block.
    auto spin_until = std::chrono::steady_clock::now() + kWorkerSpin;
    for (int i = 1; generation_.load(std::memory_order_acquire) == seen && !stop_.load(); ++i) {
      cpu_relax();
      if (i % 64 == 0 && std::chrono::steady_clock::now() >= spin_until) break;
    }
    const std::function<void(int64_t, int64_t)>* task;
    int64_t n;
    int chunks;
    uint32_t gen;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (generation_.load() == seen && !stop_.load()) {
        ++sleepers_;
        wake_.wait(lock, [&] { return generation_.load() != seen || stop_.load(); });
        --sleepers_;
      }
      if (stop_.load()) return;
      gen = seen = generation_.load();
      task = task_;
      n = task_n_;
      chunks = task_chunks_;
    }
    // A task that is over already finds no chunk left to claim.
    run_chunks(gen, task, n, chunks);
  }
}

ThreadPool& ThreadPool::global() {
  auto& pool = global_pool();
  if (!pool) pool = std::make_unique<ThreadPool>(available_cores());
  return *pool;
}

void ThreadPool::set_global_threads(int num_threads) {
  auto& pool = global_pool();
  if (pool && pool->num_threads() == num_threads) return;
  pool.reset();
  pool = std::make_unique<ThreadPool>(num_threads);
}

}  // namespace epserve
