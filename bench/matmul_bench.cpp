// Matmul benchmark: decode GEMV against memory bandwidth and prefill GEMM against the fp32 FMA
// peak, both limits measured in the same run with the same threads.
//   matmul_bench [--threads N] [--quick] [--skip-gemm] [--skip-gemv]
// Prints, per shape, time per matmul and the figure next to its limit (the ratio).
// Weights are cycled over enough distinct matrices that every call reads them from DRAM.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"

namespace epserve {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
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

// STREAM triad a = b + s * c over arrays of 2^24 doubles (128 MB each); counts 24 bytes per
// element as STREAM does. Returns the median over passes in GB/s.
double triad_gbps() {
  const int64_t n = int64_t{1} << 24;
  auto a = filled<double>(n, 1), b = filled<double>(n, 2), c = filled<double>(n, 3);
  std::vector<double> rates;
  for (int pass = 0; pass < 10; ++pass) {
    auto start = Clock::now();
    ThreadPool::global().parallel_for(n, [&](int64_t lo, int64_t hi) {
      double* pa = a.data();
      const double* pb = b.data();
      const double* pc = c.data();
      for (int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + 3.0 * pc[i];
    });
    rates.push_back(24.0 * n / seconds_since(start) / 1e9);
  }
  return median(rates);
}

__attribute__((target("avx2"))) float sum_range(const float* a, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// Read-only bandwidth: a vector sum over 256 MB (what a GEMV does to its weights), for context.
double read_gbps() {
  const int64_t n = int64_t{1} << 26;
  auto a = filled<float>(n, 4);
  std::vector<double> rates;
  std::vector<float> sums(ThreadPool::global().num_threads());
  for (int pass = 0; pass < 6; ++pass) {
    auto start = Clock::now();
    ThreadPool::global().parallel_for(n, [&](int64_t lo, int64_t hi) {
      float s = sum_range(a.data() + lo, hi - lo);
      sums[lo * static_cast<int64_t>(sums.size()) / n] = s;
    });
    rates.push_back(4.0 * n / seconds_since(start) / 1e9);
  }
  volatile float sink = sums[0];
  (void)sink;
  return median(rates);
}

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

// fp32 FMA peak: every thread runs fma_chains; GFLOP/s counts 2 flops per lane.
double fma_peak_gflops() {
  const int64_t iters = 4'000'000;
  int threads = ThreadPool::global().num_threads();
  std::vector<double> rates;
  std::vector<float> sinks(threads);
  for (int pass = 0; pass < 5; ++pass) {
    auto start = Clock::now();
    ThreadPool::global().parallel_for(threads, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) sinks[r] = fma_chains(iters);
    });
    double secs = seconds_since(start);
    rates.push_back(static_cast<double>(iters) * 12 * 16.0 * threads / secs / 1e9);
  }
  return median(rates);
}

struct Shape {
  const char* name;
  int64_t rows, cols;
  DType dtype;
};

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

void bench_gemv(const std::vector<Shape>& shapes, double triad, double read, bool quick) {
  std::printf("\n## Decode GEMV (weights streamed from DRAM; GB/s = weight bytes / time)\n");
  std::printf("%-26s %5s %6s %9s %10s %8s %8s\n", "shape [N, K] dtype", "batch", "copies",
              "us/call", "GB/s", "/triad", "/read");
  for (const Shape& s : shapes) {
    WeightSet set(s, int64_t{256} << 20);
    for (int64_t batch : {1, 2, 4, 8}) {
      auto x = filled<float>(batch * s.cols, 5);
      std::vector<float> y(static_cast<size_t>(batch * s.rows));
      for (auto& v : set.views) matmul(x.data(), batch, v, y.data());  // warm-up pass
      std::vector<double> per_call;
      int passes = quick ? 3 : 7;
      for (int pass = 0; pass < passes; ++pass) {
        auto start = Clock::now();
        for (auto& v : set.views) matmul(x.data(), batch, v, y.data());
        per_call.push_back(seconds_since(start) / set.views.size());
      }
      double t = median(per_call);
      double gbps = set.bytes_each / t / 1e9;
      char label[64];
      std::snprintf(label, sizeof(label), "%s [%ld, %ld] %s", s.name, static_cast<long>(s.rows),
                    static_cast<long>(s.cols), std::string(dtype_name(s.dtype)).c_str());
      std::printf("%-26s %5ld %6zu %9.1f %10.2f %7.0f%% %7.0f%%\n", label, static_cast<long>(batch),
                  set.views.size(), t * 1e6, gbps, 100 * gbps / triad, 100 * gbps / read);
    }
  }
}

void bench_gemm(const std::vector<Shape>& shapes, const std::vector<int64_t>& token_counts,
                double peak) {
  std::printf("\n## Prefill GEMM (GFLOP/s = 2 T N K / time)\n");
  std::printf("%-26s %6s %9s %10s %8s\n", "shape [N, K] dtype", "T", "ms/call", "GFLOP/s", "/peak");
  for (const Shape& s : shapes) {
    WeightSet set(s, 0);
    const WeightView& w = set.views[0];
    for (int64_t T : token_counts) {
      auto x = filled<float>(T * s.cols, 6);
      std::vector<float> y(static_cast<size_t>(T * s.rows));
      double flops = 2.0 * T * s.rows * s.cols;
      int reps = std::max(2, static_cast<int>(20e9 / flops));
      matmul(x.data(), T, w, y.data());
      std::vector<double> times;
      for (int r = 0; r < reps; ++r) {
        auto start = Clock::now();
        matmul(x.data(), T, w, y.data());
        times.push_back(seconds_since(start));
      }
      double t = median(times);
      char label[64];
      std::snprintf(label, sizeof(label), "%s [%ld, %ld] %s", s.name, static_cast<long>(s.rows),
                    static_cast<long>(s.cols), std::string(dtype_name(s.dtype)).c_str());
      std::printf("%-26s %6ld %9.2f %10.1f %7.0f%%\n", label, static_cast<long>(T), t * 1e3,
                  flops / t / 1e9, 100 * flops / t / 1e9 / peak);
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
    } else {
      std::fprintf(stderr,
                   "usage: matmul_bench [--threads N] [--quick] [--skip-gemm] [--skip-gemv]\n");
      return 2;
    }
  }
  if (!matmul_detail::avx2_available()) {
    std::fprintf(stderr,
                 "matmul_bench: this CPU lacks AVX2+FMA; the figures would be the scalar path\n");
  }
  ThreadPool::set_global_threads(threads);
  std::printf("# matmul_bench: %d threads, path for T<=%ld: %s, above: %s\n", threads,
              static_cast<long>(matmul_detail::kGemvMaxTokens),
              matmul_detail::avx2_available() ? "gemv-avx2" : "scalar",
              matmul_detail::avx2_available() ? "gemm-avx2" : "scalar");
  double triad = triad_gbps();
  double read = read_gbps();
  double peak = fma_peak_gflops();
  std::printf("triad bandwidth (STREAM, 3 x 128 MB, median): %.2f GB/s\n", triad);
  std::printf("read bandwidth (sum over 256 MB, median):     %.2f GB/s\n", read);
  std::printf("fp32 FMA peak (register-only loop):           %.1f GFLOP/s\n", peak);
  if (gemv) {
    std::vector<Shape> shapes = {
        {"dsv3 square", 7168, 7168, DType::BF16},
        {"dsv3 expert gate/up", 2048, 7168, DType::BF16},
        {"dsv3 expert down", 7168, 2048, DType::BF16},
        {"qwen3 q_proj", 8192, 4096, DType::BF16},
        {"qwen3 expert gate/up", 1536, 4096, DType::BF16},
        {"qwen3 expert down", 4096, 1536, DType::BF16},
        {"f32 square", 4096, 4096, DType::F32},
    };
    if (quick) shapes.resize(2);
    bench_gemv(shapes, triad, read, quick);
  }
  if (gemm) {
    std::vector<Shape> shapes = {
        {"dsv3 expert gate/up", 2048, 7168, DType::BF16},
        {"dsv3 square", 7168, 7168, DType::BF16},
        {"qwen3 expert down", 4096, 1536, DType::BF16},
        {"f32 square", 4096, 4096, DType::F32},
    };
    std::vector<int64_t> tokens = {512, 2048};
    if (quick) {
      shapes.resize(1);
      tokens = {512};
    }
    bench_gemm(shapes, tokens, peak);
  }
  return 0;
}

}  // namespace
}  // namespace epserve

int main(int argc, char** argv) {
  return epserve::run(argc, argv);
}
