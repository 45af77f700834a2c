// Matmul benchmark: decode GEMV against memory bandwidth and prefill GEMM against the peak of
// its instruction (fp32 FMA for the AVX2 path, vdpbf16ps for the AVX512-BF16 path), both
// limits measured in the same run with the same threads. Every path the CPU has (after
// EPSERVE_CPU_FEATURES) is measured: fp32 (AVX2) and, for BF16 weights, bf16 (AVX512-BF16).
//   matmul_bench [--threads N] [--quick] [--skip-gemm] [--skip-gemv] [--cpu-time]
// The machine may be shared, so every pass of a kernel is paired with a pass of its limit run
// just before it (STREAM triad and a read-only sum for GEMV, a register-only FMA loop for GEMM),
// and the table gives medians over passes of the kernel, of the limit and of their ratio.
// Decode weights are cycled over enough distinct matrices (>= 256 MB) that every call reads
// them from DRAM.
#include <immintrin.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve {
namespace {

// Wall time, or with --cpu-time the CPU time of the whole process divided by the thread count:
// what the wall time would be if the threads had their cores to themselves. Every figure and
// its limit use the same clock.
bool g_cpu_time = false;

double now_seconds() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + 1e-9 * ts.tv_nsec) / ThreadPool::global().num_threads();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double seconds_since(double start) {
  return now_seconds() - start;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Deterministic values in [-1, 1) without a slow generator; filled in parallel (first touch).
float hash_value(uint64_t i) {
  uint64_t z = (i + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / static_cast<float>(1ull << 23) - 1.0f;
}

template <typename T>
std::vector<T> filled(int64_t n, uint64_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  ThreadPool::global().parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float f = hash_value(seed * 0x100000000ull + static_cast<uint64_t>(i));
      if constexpr (sizeof(T) == 2) {
        v[i] = f32_to_bf16(f);
      } else {
        v[i] = f;
      }
    }
  });
  return v;
}

__attribute__((target("avx2"))) double sum_range(const double* a, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 16 <= n; i += 16) {
    s0 = _mm256_add_pd(s0, _mm256_loadu_pd(a + i));
    s1 = _mm256_add_pd(s1, _mm256_loadu_pd(a + i + 4));
    s2 = _mm256_add_pd(s2, _mm256_loadu_pd(a + i + 8));
    s3 = _mm256_add_pd(s3, _mm256_loadu_pd(a + i + 12));
  }
  double out[4];
  _mm256_storeu_pd(out, _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  return out[0] + out[1] + out[2] + out[3];
}

// Memory bandwidth references on three arrays of 2^24 doubles (128 MB each).
class Bandwidth {
 public:
  Bandwidth() : a_(filled<double>(kN, 1)), b_(filled<double>(kN, 2)), c_(filled<double>(kN, 3)) {}

  // STREAM triad a = b + 3 c, counting 24 bytes per element as STREAM does. GB/s.
  double triad() {
    double start = now_seconds();
    ThreadPool::global().parallel_for(kN, [&](int64_t lo, int64_t hi) {
      double* pa = a_.data();
      const double* pb = b_.data();
      const double* pc = c_.data();
      for (int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + 3.0 * pc[i];
    });
    return 24.0 * kN / seconds_since(start) / 1e9;
  }

  // A vector sum over b and c (256 MB): reads only, as a GEMV does. GB/s.
  double read() {
    std::vector<double> sums(2 * ThreadPool::global().num_threads() + 2);
    double start = now_seconds();
    ThreadPool::global().parallel_for(2 * kN, [&](int64_t lo, int64_t hi) {
      int64_t mid = std::clamp(kN, lo, hi);
      double s = sum_range(b_.data() + lo, mid - lo);
      if (hi > mid) s += sum_range(c_.data() + (mid - kN), hi - mid);
      sums[lo * static_cast<int64_t>(sums.size() - 1) / (2 * kN)] = s;
    });
    double secs = seconds_since(start);
    sink_ += sums[0];
    return 16.0 * kN / secs / 1e9;
  }

 private:
  static constexpr int64_t kN = int64_t{1} << 24;
  std::vector<double> a_, b_, c_;
  double sink_ = 0;
};

// Twelve independent register-only chains of 8-lane FMAs (more than latency x throughput).
__attribute__((target("avx2,fma"))) float fma_chains(int64_t iters) {
  __m256 a[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) a[j] = _mm256_set1_ps(1.0f + j * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], m, c);
    __asm__ volatile(""
                     : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]),
                       "+x"(a[6]), "+x"(a[7]), "+x"(a[8]), "+x"(a[9]), "+x"(a[10]), "+x"(a[11]));
  }
  __m256 s = a[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, a[j]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

// fp32 FMA peak of all threads (~50 ms): each runs fma_chains; 2 flops per lane. GFLOP/s.
double fma_peak_gflops() {
  const int64_t iters = 1'000'000;
  int threads = ThreadPool::global().num_threads();
  std::vector<float> sinks(threads);
  double start = now_seconds();
  ThreadPool::global().parallel_for(threads, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) sinks[r] = fma_chains(iters);
  });
  return static_cast<double>(iters) * 12 * 16.0 * threads / seconds_since(start) / 1e9;
}

// Twelve independent register-only chains of 16-lane vdpbf16ps: 64 flops per instruction.
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(int64_t iters) {
  __m512 a[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) a[j] = _mm512_set1_ps(1.0f + j * 1e-3f);
  const __m512bh m = (__m512bh)_mm512_set1_epi32(0x3f803f80), c = m;
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_dpbf16_ps(a[j], m, c);
    __asm__ volatile(""
                     : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]),
                       "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
  }
  __m512 s = a[0];
#pragma GCC unroll 12
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, a[j]);
  return _mm512_reduce_add_ps(s);
}

// vdpbf16ps peak of all threads (~50 ms). GFLOP/s.
double dpbf16_peak_gflops() {
  const int64_t iters = 1'000'000;
  int threads = ThreadPool::global().num_threads();
  std::vector<float> sinks(threads);
  double start = now_seconds();
  ThreadPool::global().parallel_for(threads, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) sinks[r] = dpbf16_chains(iters);
  });
  return static_cast<double>(iters) * 12 * 64.0 * threads / seconds_since(start) / 1e9;
}

// The 1-minute load average, so that a reader can tell whether the machine was shared.
std::string load_average() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "unknown";
  char buf[64] = {};
  if (!std::fgets(buf, sizeof(buf), f)) buf[0] = 0;
  std::fclose(f);
  std::string s(buf);
  return s.substr(0, s.find(' '));
}

struct Shape {
  const char* name;
  int64_t rows, cols;
  DType dtype;
};

std::string label(const Shape& s) {
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%s [%ld, %ld] %s", s.name, static_cast<long>(s.rows),
                static_cast<long>(s.cols), std::string(dtype_name(s.dtype)).c_str());
  return buf;
}

// Enough distinct copies of a matrix that one pass over them is at least `min_bytes`.
struct WeightSet {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<WeightView> views;
  int64_t bytes_each = 0;

  WeightSet(const Shape& s, int64_t min_bytes) {
    bytes_each = s.rows * s.cols * static_cast<int64_t>(dtype_size(s.dtype));
    int64_t copies = std::max<int64_t>(1, (min_bytes + bytes_each - 1) / bytes_each);
    for (int64_t c = 0; c < copies; ++c) {
      std::vector<uint8_t> bytes(static_cast<size_t>(bytes_each));
      if (s.dtype == DType::BF16) {
        auto v = filled<bf16_t>(s.rows * s.cols, 10 + c);
        std::memcpy(bytes.data(), v.data(), bytes.size());
      } else {
        auto v = filled<float>(s.rows * s.cols, 10 + c);
        std::memcpy(bytes.data(), v.data(), bytes.size());
      }
      storage.push_back(std::move(bytes));
      views.push_back(WeightView{s.dtype, storage.back().data(), s.rows, s.cols, s.cols});
    }
  }
};

using matmul_detail::MatmulPath;

// The path families to measure for weights of this dtype: "fp32" (AVX2, or scalar) always,
// "bf16" (AVX512-BF16) for BF16 weights where the CPU has it.
std::vector<const char*> families(DType dtype) {
  std::vector<const char*> out = {"fp32"};
  if (dtype == DType::BF16 && matmul_detail::bf16_available()) out.push_back("bf16");
  return out;
}

MatmulPath family_path(const char* family, int64_t num_tokens) {
  if (std::string(family) == "bf16") {
    return num_tokens <= matmul_detail::kBf16GemvMaxTokens ? MatmulPath::kBf16Gemv
                                                           : MatmulPath::kBf16Gemm;
  }
  if (!matmul_detail::avx2_available()) return MatmulPath::kScalar;
  return num_tokens <= matmul_detail::kGemvMaxTokens ? MatmulPath::kGemv : MatmulPath::kGemm;
}

void bench_gemv(const std::vector<Shape>& shapes, const std::vector<int64_t>& batches,
                Bandwidth& bandwidth, int passes) {
  std::printf("\n## Decode (weights streamed from DRAM; GB/s = weight bytes / time)\n");
  std::printf("%-34s %-17s %5s %9s %8s %8s %8s %7s %7s\n", "shape [N, K] dtype", "path", "batch",
              "us/call", "GB/s", "triad", "read", "/triad", "/read");
  for (const Shape& s : shapes) {
    WeightSet set(s, int64_t{256} << 20);
    for (int64_t batch : batches) {
      for (const char* family : families(s.dtype)) {
        const MatmulPath path = family_path(family, batch);
        auto x = filled<float>(batch * s.cols, 5);
        std::vector<float> y(static_cast<size_t>(batch * s.rows));
        auto pass_over = [&] {
          for (auto& v : set.views) {
            matmul_detail::matmul_with_path(x.data(), batch, v, y.data(), path);
          }
        };
        pass_over();  // warm-up
        std::vector<double> gbps, triad, read, vs_triad, vs_read;
        for (int pass = 0; pass < passes; ++pass) {
          triad.push_back(bandwidth.triad());
          read.push_back(bandwidth.read());
          double start = now_seconds();
          pass_over();
          double secs = seconds_since(start);
          gbps.push_back(static_cast<double>(set.bytes_each) * set.views.size() / secs / 1e9);
          vs_triad.push_back(gbps.back() / triad.back());
          vs_read.push_back(gbps.back() / read.back());
        }
        std::printf("%-34s %-17s %5ld %9.0f %8.2f %8.2f %8.2f %6.0f%% %6.0f%%\n", label(s).c_str(),
                    matmul_detail::path_name(path), static_cast<long>(batch),
                    set.bytes_each / median(gbps) / 1e3, median(gbps), median(triad), median(read),
                    100 * median(vs_triad), 100 * median(vs_read));
      }
    }
  }
}

void bench_gemm(const std::vector<Shape>& shapes, const std::vector<int64_t>& token_counts,
                int passes) {
  std::printf("\n## Prefill (GFLOP/s = 2 T N K / time; peak: of the path's instruction)\n");
  std::printf("%-34s %-17s %6s %9s %9s %9s %7s\n", "shape [N, K] dtype", "path", "T", "ms/call",
              "GFLOP/s", "peak", "/peak");
  for (const Shape& s : shapes) {
    WeightSet set(s, 0);
    const WeightView& w = set.views[0];
    for (int64_t T : token_counts) {
      for (const char* family : families(s.dtype)) {
        const MatmulPath path = family_path(family, T);
        const bool bf16 = std::string(family) == "bf16";
        auto x = filled<float>(T * s.cols, 6);
        std::vector<float> y(static_cast<size_t>(T * s.rows));
        double flops = 2.0 * T * s.rows * s.cols;
        matmul_detail::matmul_with_path(x.data(), T, w, y.data(), path);
        std::vector<double> rate, peak, ratio;
        for (int pass = 0; pass < passes; ++pass) {
          peak.push_back(bf16 ? dpbf16_peak_gflops() : fma_peak_gflops());
          double start = now_seconds();
          matmul_detail::matmul_with_path(x.data(), T, w, y.data(), path);
          rate.push_back(flops / seconds_since(start) / 1e9);
          ratio.push_back(rate.back() / peak.back());
        }
        std::printf("%-34s %-17s %6ld %9.2f %9.1f %9.1f %6.0f%%\n", label(s).c_str(),
                    matmul_detail::path_name(path), static_cast<long>(T),
                    flops / median(rate) / 1e6, median(rate), median(peak), 100 * median(ratio));
      }
    }
  }
}

int run(int argc, char** argv) {
  int threads = available_cores();
  bool quick = false, gemm = true, gemv = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--skip-gemm") {
      gemm = false;
    } else if (a == "--skip-gemv") {
      gemv = false;
    } else if (a == "--cpu-time") {
      g_cpu_time = true;
    } else {
      std::fprintf(
          stderr,
          "usage: matmul_bench [--threads N] [--quick] [--skip-gemm] [--skip-gemv] [--cpu-time]\n");
      return 2;
    }
  }
  bool avx2 = matmul_detail::avx2_available();
  if (!avx2) std::fprintf(stderr, "matmul_bench: no AVX2+FMA, the figures are the scalar path\n");
  ThreadPool::set_global_threads(threads);
  std::printf("# matmul_bench: %d threads; fp32 path for T <= %ld: %s, above: %s\n", threads,
              static_cast<long>(matmul_detail::kGemvMaxTokens), avx2 ? "gemv-avx2" : "scalar",
              avx2 ? "gemm-avx2" : "scalar");
  std::printf("# %s\n", kernel_paths_summary().c_str());
  std::printf("# load average at start: %s (cores: %d); clock: %s\n", load_average().c_str(),
              available_cores(), g_cpu_time ? "process CPU time / threads" : "wall");
  if (gemv) {
    std::vector<Shape> shapes = {
        {"bench expert gate/up", 768, 2048, DType::BF16},
        {"bench dense up", 5632, 2048, DType::BF16},
        {"bench lm_head", 32768, 2048, DType::BF16},
        {"dsv3 7168x7168", 7168, 7168, DType::BF16},
        {"dsv3 expert gate/up", 2048, 7168, DType::BF16},
        {"dsv3 expert down", 7168, 2048, DType::BF16},
        {"qwen3 q_proj", 8192, 4096, DType::BF16},
        {"qwen3 expert gate/up", 1536, 4096, DType::BF16},
        {"qwen3 expert down", 4096, 1536, DType::BF16},
        {"f32 4096x4096", 4096, 4096, DType::F32},
    };
    std::vector<int64_t> batches = {1, 2, 4, 8, 16};
    if (quick) {
      shapes.resize(2);
      batches = {1, 4, 16};
    }
    Bandwidth bandwidth;
    bench_gemv(shapes, batches, bandwidth, quick ? 3 : 5);
  }
  if (gemm) {
    std::vector<Shape> shapes = {
        {"bench expert gate/up", 768, 2048, DType::BF16},
        {"bench expert down", 2048, 768, DType::BF16},
        {"bench dense up", 5632, 2048, DType::BF16},
        {"bench dense down", 2048, 5632, DType::BF16},
        {"dsv3 expert gate/up", 2048, 7168, DType::BF16},
        {"dsv3 7168x7168", 7168, 7168, DType::BF16},
        {"qwen3 expert down", 4096, 1536, DType::BF16},
        {"f32 4096x4096", 4096, 4096, DType::F32},
    };
    std::vector<int64_t> tokens = {64, 512, 2048};
    if (quick) {
      shapes.resize(3);
      tokens = {64, 512};
    }
    bench_gemm(shapes, tokens, 3);
  }
  std::printf("\n# load average at end: %s\n", load_average().c_str());
  return 0;
}

}  // namespace
}  // namespace epserve

int main(int argc, char** argv) {
  return epserve::run(argc, argv);
}
