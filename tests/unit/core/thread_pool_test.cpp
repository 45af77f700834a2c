#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace epserve {
namespace {

// Every index of [0, n) is visited exactly once, in chunks of at least min_chunk, with one to
// four chunks per thread, over many back-to-back calls (a worker that wakes late must never run a
// chunk of a later call).
TEST(ThreadPool, CoversEveryIndexOnceAcrossManyCalls) {
  ThreadPool pool(3);
  for (int call = 0; call < 3000; ++call) {
    int64_t n = 1 + call % 97;
    int64_t min_chunk = 1 + call % 5;
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> short_chunks{0};
    pool.parallel_for(
        n,
        [&](int64_t b, int64_t e) {
          if (e - b < min_chunk && e - b < n) short_chunks.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        },
        min_chunk, 1 + call % 4);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "call " << call << " i " << i;
    ASSERT_EQ(short_chunks.load(), 0) << "call " << call;
  }
}

TEST(ThreadPool, NestedLoopsRunInline) {
  ThreadPool::set_global_threads(2);
  std::atomic<int64_t> total{0};
  ThreadPool::global().parallel_for(4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      ThreadPool::global().parallel_for(10, [&](int64_t b2, int64_t e2) {
        EXPECT_EQ(b2, 0);
        EXPECT_EQ(e2, 10);
        total.fetch_add(e2 - b2);
      });
    }
  });
  EXPECT_EQ(total.load(), 40);
  ThreadPool::set_global_threads(available_cores());
}

// An exception from any chunk reaches the caller after all chunks have finished; the pool
// stays usable.
TEST(ThreadPool, ExceptionsReachTheCaller) {
  ThreadPool pool(2);
  for (int64_t bad : {0, 1}) {
    std::atomic<int> finished{0};
    EXPECT_THROW(pool.parallel_for(2,
                                   [&](int64_t b, int64_t) {
                                     if (b == bad) throw std::runtime_error("chunk failed");
                                     std::this_thread::sleep_for(std::chrono::milliseconds(5));
                                     finished.fetch_add(1);
                                   }),
                 std::runtime_error);
    EXPECT_EQ(finished.load(), 1);
  }
  std::atomic<int> count{0};
  pool.parallel_for(8, [&](int64_t b, int64_t e) { count.fetch_add(static_cast<int>(e - b)); });
  EXPECT_EQ(count.load(), 8);
}

}  // namespace
}  // namespace epserve
