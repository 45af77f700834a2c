// Timing shared by the benches that can run on a shared machine: wall time, or with
// bench_clock::cpu_time set (--cpu-time 1, with one thread so that every kernel runs on the
// calling thread) the calling thread's CPU time, which other processes do not inflate by
// descheduling it (they still share the memory bandwidth and caches); and the triad, the memory
// bandwidth limit each bench prints beside its figure.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <vector>

#include "core/thread_pool.h"

namespace epserve::bench_clock {

inline bool cpu_time = false;

inline double now_seconds() {
  if (cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double seconds_since(double t) {
  return now_seconds() - t;
}

// a = b + s * c over arrays far larger than the caches; bytes moved = 3 * size (2 read, 1 write).
inline double triad_gb_per_s() {
  const int64_t n = int64_t{48} << 20;  // 48 Mi floats = 192 MiB per array
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t = now_seconds();
    ThreadPool::global().parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) a[i] = b[i] + 3.0f * c[i];
    });
    best = std::max(best, 3.0 * n * sizeof(float) / seconds_since(t) / 1e9);
  }
  return best;
}

}  // namespace epserve::bench_clock
