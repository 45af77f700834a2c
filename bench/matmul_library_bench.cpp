// Would OpenBLAS or oneDNN do for epserve's matmul? Measures, next to epserve's own kernels,
// (a) speed: decode (T=1, weights streamed from DRAM, GB/s) and prefill (T=512, GFLOP/s);
// (b) the property the engine needs: y[t, n] bit-identical whatever the batch holds. Row 0 of
//     y is computed alone (T=1), in a batch of 37 and in a batch of 512, with 1 and 2 threads;
//     the bench prints how many of its N values differ from the T=1, 1-thread result.
// F32 weights only: neither library here multiplies fp32 activations by BF16 weights (oneDNN
// 2.6 on AVX2 is tried and reported).
//   matmul_library_bench [--threads N]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"

namespace epserve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kRows = 2048, kCols = 7168;  // a DeepSeek-V3 expert gate/up projection

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// y[T, N] = x[T, K] W[N, K]^T with the weight at `w`.
using Matmul = std::function<void(const float* x, int64_t tokens, const float* w, float* y)>;

void set_threads(int threads) {
  ThreadPool::set_global_threads(threads);
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
}

Matmul ours() {
  return [](const float* x, int64_t tokens, const float* w, float* y) {
    matmul(x, tokens, WeightView{DType::F32, w, kRows, kCols, kCols}, y);
  };
}

Matmul openblas() {
  return [](const float* x, int64_t tokens, const float* w, float* y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, kRows, kCols, 1.0f, x, kCols, w,
                kCols, 0.0f, y, kRows);
  };
}

Matmul onednn() {
  return [](const float* x, int64_t tokens, const float* w, float* y) {
    using namespace dnnl;
    static engine eng(engine::kind::cpu, 0);
    static stream strm(eng);
    using dt = memory::data_type;
    memory::desc src_md({tokens, kCols}, dt::f32, memory::format_tag::ab);
    memory::desc wei_md({kCols, kRows}, dt::f32, memory::format_tag::ba);  // W[N, K] row-major
    memory::desc dst_md({tokens, kRows}, dt::f32, memory::format_tag::ab);
    // Primitives are created once per token count, as a serving engine would.
    static std::map<int64_t, dnnl::matmul> primitives;
    auto it = primitives.find(tokens);
    if (it == primitives.end()) {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), eng);
      it = primitives.emplace(tokens, dnnl::matmul(pd)).first;
    }
    dnnl::matmul& prim = it->second;
    memory src(src_md, eng, const_cast<float*>(x)), wei(wei_md, eng, const_cast<float*>(w)),
        dst(dst_md, eng, y);
    prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    strm.wait();
  };
}

std::vector<float> filled(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 1;
  for (auto& e : v) {
    s = s * 1664525u + 1013904223u;
    e = static_cast<float>(s >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
  return v;
}

void report(const char* name, const Matmul& mm, int threads,
            const std::vector<std::vector<float>>& weights, const std::vector<float>& x) {
  // Speed: decode over all copies (DRAM), prefill on one.
  set_threads(threads);
  std::vector<float> y(512 * kRows);
  for (auto& w : weights) mm(x.data(), 1, w.data(), y.data());
  double best_decode = 1e30;
  for (int pass = 0; pass < 5; ++pass) {
    auto start = Clock::now();
    for (auto& w : weights) mm(x.data(), 1, w.data(), y.data());
    best_decode = std::min(best_decode, seconds_since(start) / weights.size());
  }
  mm(x.data(), 512, weights[0].data(), y.data());
  double best_prefill = 1e30;
  for (int pass = 0; pass < 3; ++pass) {
    auto start = Clock::now();
    mm(x.data(), 512, weights[0].data(), y.data());
    best_prefill = std::min(best_prefill, seconds_since(start));
  }
  // Batch invariance of row 0.
  set_threads(1);
  std::vector<float> alone(kRows);
  mm(x.data(), 1, weights[0].data(), alone.data());
  std::string diffs;
  for (int t : {1, 2}) {
    set_threads(t);
    for (int64_t tokens : {1, 37, 512}) {
      mm(x.data(), tokens, weights[0].data(), y.data());
      int64_t differ = 0;
      for (int64_t n = 0; n < kRows; ++n) differ += std::memcmp(&y[n], &alone[n], 4) != 0;
      diffs += " " + std::to_string(differ);
    }
  }
  std::printf("%-10s %10.2f %12.1f   %s\n", name, kRows * kCols * 4 / best_decode / 1e9,
              2.0 * 512 * kRows * kCols / best_prefill / 1e9, diffs.c_str());
}

void try_onednn_bf16() {
  using namespace dnnl;
  using dt = memory::data_type;
  engine eng(engine::kind::cpu, 0);
  for (auto [src, label] :
       {std::pair{dt::f32, "f32 x bf16 -> f32"}, {dt::bf16, "bf16 x bf16 -> f32"}}) {
    try {
      memory::desc src_md({1, kCols}, src, memory::format_tag::ab);
      memory::desc wei_md({kCols, kRows}, dt::bf16, memory::format_tag::ba);
      memory::desc dst_md({1, kRows}, dt::f32, memory::format_tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), eng);
      std::printf("oneDNN %s: available (%s)\n", label, pd.impl_info_str());
    } catch (const dnnl::error& e) {
      std::printf("oneDNN %s: not available on this CPU (%s)\n", label, e.what());
    }
  }
}

int run(int argc, char** argv) {
  int threads = available_cores();
  if (argc == 3 && std::string(argv[1]) == "--threads") threads = std::atoi(argv[2]);
  std::vector<std::vector<float>> weights;
  for (uint32_t c = 0; c < 5; ++c) weights.push_back(filled(kRows * kCols, c + 1));
  auto x = filled(512 * kCols, 99);
  std::printf("# F32 weights [%ld, %ld] (%.0f MB, 5 copies), %d threads\n",
              static_cast<long>(kRows), static_cast<long>(kCols), kRows * kCols * 4 / 1e6, threads);
  std::printf("%-10s %10s %12s   %s\n", "library", "T=1 GB/s", "T=512 GFLOP/s",
              "row-0 values differing from T=1 alone (1 thread: T=1 37 512; 2 threads: same)");
  report("epserve", ours(), threads, weights, x);
  report("OpenBLAS", openblas(), threads, weights, x);
  report("oneDNN", onednn(), threads, weights, x);
  try_onednn_bf16();
  return 0;
}

}  // namespace
}  // namespace epserve

int main(int argc, char** argv) {
  return epserve::run(argc, argv);
}
