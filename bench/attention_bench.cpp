// Attention benchmark: the attention kernels (src/kernels/cpu/attention.h) on the MLA shape of
// the bench model (`epserve make-model --preset bench`: 16 heads, kv_lora_rank 256, rope 32) and
// the GQA shape of its Qwen3-MoE variant (16 query heads over 4 kv heads of 128), decode and
// prefill, against both limits measured in the same run, and beside the scalar path of the same
// kernels (AttentionPath::kScalar, the canonical order written plainly, on the same threads).
//   attention_bench [--threads N] [--cpu-time] [--passes P]
// - Decode: one new token per sequence over 512..4096 keys, the sequences' caches cycled over
//   >= 128 MB so that every call reads its rows from DRAM.
// - Prefill: 512 new tokens attending causally to the past and to each other.
// GFLOP/s counts 2 flops per multiply-add of the scores and the weighted sums (not the softmax);
// GB/s the cache rows a sequence reads, each row once. Limits: a register-only FMA loop on every
// thread (the fp32 FMA peak) and a STREAM triad a = b + 3c over 3 x 128 MB (24 bytes counted per
// element, as STREAM does). The scalar path is ~100x slower, so for prefill it is timed on the
// last 4 new tokens alone and compared in GFLOP/s. Each pass runs both limits, the AVX2 kernel
// and the scalar path; every figure is the best of the passes and each ratio is best figure /
// best limit. With --cpu-time the clock is process CPU time / threads (for a shared machine).
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

#include "core/thread_pool.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/cpu_features.h"

namespace epserve {
namespace {

using attention_detail::AttentionPath;
using attention_detail::AttentionProblem;

// Wall time, or with --cpu-time the process CPU time divided by the thread count.
bool g_cpu_time = false;

double now_seconds() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + 1e-9 * ts.tv_nsec) / ThreadPool::global().num_threads();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Deterministic values in [-0.5, 0.5), filled in parallel (first touch by the threads).
std::vector<float> filled(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  ThreadPool::global().parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = (seed * 0x100000000ull + i + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
      z ^= z >> 31;
      v[i] = static_cast<float>(z >> 40) / static_cast<float>(1ull << 24) - 0.5f;
    }
  });
  return v;
}

// Twelve independent register-only chains of 8-lane FMAs.
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

// The fp32 FMA peak of all threads together, GFLOP/s.
double fma_peak_gflops() {
  const int64_t iters = 1'000'000;
  const int threads = ThreadPool::global().num_threads();
  std::vector<float> sinks(threads);
  double start = now_seconds();
  ThreadPool::global().parallel_for(threads, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) sinks[r] = fma_chains(iters);
  });
  return static_cast<double>(iters) * 12 * 16.0 * threads / (now_seconds() - start) / 1e9;
}

// STREAM triad a = b + 3c over three arrays of 2^24 doubles, GB/s.
class Triad {
 public:
  Triad() : a_(kN), b_(kN, 1.0), c_(kN, 2.0) {}
  double gbps() {
    double start = now_seconds();
    ThreadPool::global().parallel_for(kN, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) a_[i] = b_[i] + 3.0 * c_[i];
    });
    return 24.0 * kN / (now_seconds() - start) / 1e9;
  }

 private:
  static constexpr int64_t kN = int64_t{1} << 24;
  std::vector<double> a_, b_, c_;
};

struct Shape {
  const char* name;
  bool mla;
  int64_t heads, kv_heads, dim1, dim2;  // MLA: kv_lora_rank, rope_dim; GQA: head_dim, 0
};

struct Case {
  Shape shape;
  int64_t past, fresh;
};

// `copies` sequences of past + fresh tokens, each in its own cache slots and with its own
// queries, so that cycling over them reads every cache row from memory.
struct Workload {
  Shape sh;
  int64_t past, fresh, copies, row, vdim;
  std::vector<float> keys, values, q1, q2, out;
  std::vector<int32_t> slots;

  Workload(const Case& c, int64_t copies)
      : sh(c.shape), past(c.past), fresh(c.fresh), copies(copies) {
    const int64_t total = past + fresh;
    row = sh.mla ? sh.dim1 + sh.dim2 : sh.kv_heads * sh.dim1;
    vdim = sh.dim1;
    keys = filled(copies * total * row, 1);
    if (!sh.mla) values = filled(copies * total * row, 2);
    q1 = filled(copies * fresh * sh.heads * sh.dim1, 3);
    q2 = filled(copies * fresh * sh.heads * std::max<int64_t>(sh.dim2, 1), 4);
    out.resize(copies * fresh * sh.heads * vdim);
    slots.resize(copies * total);
    for (int64_t s = 0; s < copies * total; ++s) slots[s] = static_cast<int32_t>(s);
  }

  void run(int64_t copy, AttentionPath path) {
    const int64_t total = past + fresh, d2 = std::max<int64_t>(sh.dim2, 1);
    const float* k = keys.data();
    AttentionProblem pb{
        .seq = SeqSlots{slots.data() + copy * total, past, fresh},
        .num_kv_groups = sh.mla ? 1 : sh.kv_heads,
        .heads_per_group = sh.mla ? sh.heads : sh.heads / sh.kv_heads,
        .q1 = {q1.data() + copy * fresh * sh.heads * sh.dim1, sh.heads * sh.dim1, sh.dim1},
        .q2 = {q2.data() + copy * fresh * sh.heads * d2, sh.heads * d2, d2},
        .dim1 = sh.dim1,
        .dim2 = sh.dim2,
        .keys = k,
        .values = sh.mla ? k : values.data(),
        .group_offset = sh.mla ? 0 : sh.dim1,
        .row_stride = row,
        .value_dim = vdim,
        .scale = 0.05f,
        .out = {out.data() + copy * fresh * sh.heads * vdim, sh.heads * vdim, vdim}};
    attention_detail::run_attention(pb, path, true);
  }

  // Multiply-adds x 2 of one sequence (scores and weighted sums; softmax not counted).
  double flops() const {
    double keys_seen = 0;
    for (int64_t i = 0; i < fresh; ++i) keys_seen += static_cast<double>(past + i + 1);
    return 2.0 * keys_seen * sh.heads * (sh.dim1 + sh.dim2 + vdim);
  }
  // Bytes of the cache rows one sequence reads, each row once.
  double kv_bytes() const {
    return static_cast<double>(past + fresh) * row * sizeof(float) * (sh.mla ? 1 : 2);
  }
};

struct Best {
  double value = 0;
  void add(double v) { value = std::max(value, v); }
};

// Seconds per sequence of running `calls` sequences (cycling over the copies) on `path`.
double seconds_per_call(Workload& w, AttentionPath path, int64_t calls) {
  double start = now_seconds();
  for (int64_t c = 0; c < calls; ++c) w.run(c % w.copies, path);
  return (now_seconds() - start) / calls;
}

void run_case(const Case& c, int passes, Triad& triad) {
  const bool decode = c.fresh == 1;
  const int64_t total = c.past + c.fresh;
  const int64_t row_bytes =
      (c.shape.mla ? c.shape.dim1 + c.shape.dim2 : 2 * c.shape.kv_heads * c.shape.dim1) * 4;
  // Decode: >= 128 MB of caches (4x the L3 here); prefill: one sequence, reused.
  const int64_t copies =
      decode ? std::max<int64_t>(1, (int64_t{128} << 20) / (total * row_bytes)) : 1;
  Workload w(c, copies);
  // The scalar path runs ~100x slower: for prefill it is timed on the last 4 new tokens alone
  // (GFLOP/s compared); for decode on as many sequences as take ~0.3 s.
  Workload tail(decode ? Case{c.shape, 0, 1} : Case{c.shape, total - 4, 4}, 1);
  Workload& scalar_w = decode ? w : tail;
  w.run(0, AttentionPath::kAuto);
  const double t0 = seconds_per_call(scalar_w, AttentionPath::kScalar, 1);
  const int64_t kernel_calls = copies;
  const int64_t scalar_calls = std::clamp<int64_t>(0.3 / t0, 1, scalar_w.copies);
  Best peak, stream, kernel, scalar;
  for (int pass = 0; pass < passes; ++pass) {
    peak.add(fma_peak_gflops());
    stream.add(triad.gbps());
    kernel.add(1.0 / seconds_per_call(w, AttentionPath::kAuto, kernel_calls));
    scalar.add(1.0 / seconds_per_call(scalar_w, AttentionPath::kScalar, scalar_calls));
  }
  const double gflops = w.flops() * kernel.value / 1e9, gbps = w.kv_bytes() * kernel.value / 1e9;
  const double scalar_gflops = scalar_w.flops() * scalar.value / 1e9;
  std::printf(
      "| %s | %lld + %lld | %.3f | %.1f | %.2f | %.1f | %.0f%% | %.1f | %.0f%% | %.2f | %.0fx |\n",
      c.shape.name, static_cast<long long>(c.past), static_cast<long long>(c.fresh),
      1e3 / kernel.value, gflops, gbps, peak.value, 100.0 * gflops / peak.value, stream.value,
      100.0 * gbps / stream.value, scalar_gflops, gflops / scalar_gflops);
  std::fflush(stdout);
}

}  // namespace
}  // namespace epserve

int main(int argc, char** argv) {
  using namespace epserve;
  int passes = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      ThreadPool::set_global_threads(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--cpu-time")) {
      g_cpu_time = true;
    } else if (!std::strcmp(argv[i], "--passes") && i + 1 < argc) {
      passes = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: attention_bench [--threads N] [--cpu-time] [--passes P]\n");
      return 2;
    }
  }
  if (!attention_detail::avx2_available()) {
    std::fprintf(stderr, "attention_bench: this CPU has no AVX2 + FMA; nothing to compare\n");
    return 1;
  }
  std::printf("threads %d, clock %s, best of %d passes\n", ThreadPool::global().num_threads(),
              g_cpu_time ? "cpu-time/threads" : "wall", passes);
  std::printf("%s\n", kernel_paths_summary().c_str());
  const Shape mla{"MLA 16 heads, 256 + 32", true, 16, 1, 256, 32};
  const Shape gqa{"GQA 16 / 4 heads x 128", false, 16, 4, 128, 0};
  Triad triad;
  std::printf(
      "\nGFLOP/s: 2 x the multiply-adds of the scores and weighted sums; GB/s: the cache rows a "
      "sequence reads (each once) / time. Decode: 1 new token per sequence, caches cycled over "
      ">= 128 MB.\n\n"
      "| shape | past + new | AVX2 ms/seq | GFLOP/s | GB/s | FMA peak GFLOP/s | / peak "
      "| triad GB/s | / triad | scalar GFLOP/s | AVX2 / scalar |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t ctx : {512, 1024, 2048, 4096}) run_case({mla, ctx - 1, 1}, passes, triad);
  for (int64_t ctx : {512, 4096}) run_case({gqa, ctx - 1, 1}, passes, triad);
  run_case({mla, 0, 512}, passes, triad);
  run_case({mla, 1536, 512}, passes, triad);
  run_case({gqa, 0, 512}, passes, triad);
  return 0;
}
