// Routed-expert matmuls at decode batch sizes with BF16, FP8 block-scaled (DeepSeek-V3) and
// packed INT4 (Kimi-K2-Thinking) weights: the part of a decode step that the quantized formats
// shrink. Many distinct expert matrices (far more bytes than the caches) are multiplied in turn,
// as a decode step walks its experts; the formats are interleaved in every repetition so they
// see the same machine load. Prints time per pass, bytes read per token-pass (values + scales),
// the speed-up over BF16 and the weight bandwidth beside a STREAM triad measured in the same run.
//
//   quant_matmul_bench [--rows R] [--cols C] [--mb BF16_MB] [--reps N] [--threads T] [--tokens T]
//                      [--cpu-time 1]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_quant.h"
#include "kernels/cpu/vector_paths.h"

using namespace epserve;

namespace {

struct Format {
  std::string name;
  std::vector<Tensor> values, scales;
  std::vector<WeightView> views;
  double bytes = 0;
  std::vector<double> seconds;
  bool dense = false;
  matmul_detail::QuantPath path = matmul_detail::QuantPath::kFp32Scalar;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 768, cols = 2048, mb = 384, reps = 7, threads = 0, tokens = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (f == "--rows") rows = v;
    if (f == "--cols") cols = v;
    if (f == "--mb") mb = v;
    if (f == "--reps") reps = v;
    if (f == "--threads") threads = v;
    if (f == "--tokens") tokens = v;
    if (f == "--cpu-time") bench_clock::cpu_time = v != 0;
  }
  if (bench_clock::cpu_time && threads != 1) {
    std::fprintf(stderr, "--cpu-time 1 needs --threads 1\n");
    return 2;
  }
  if (threads > 0) ThreadPool::set_global_threads(static_cast<int>(threads));
  const int64_t count = std::max<int64_t>(1, (mb << 20) / (rows * cols * 2));
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  // Weights drawn as a checkpoint's are (normal), quantized as DeepSeek's block cast and
  // compressed-tensors do (codes of the block's amax / 448, of the group's amax / 7.5), so the
  // FP8 codes are as rare subnormal as in a real checkpoint.
  std::vector<float> dense(static_cast<size_t>(rows * cols));
  Tensor b, q, s, p, g;
  std::vector<Format> bf16(1), fp8(1), int4(1);
  for (int64_t m = 0; m < count; ++m) {
    for (float& v : dense) v = normal(rng);
    b = Tensor::empty(DType::BF16, {rows, cols});
    for (int64_t i = 0; i < b.numel(); ++i) b.ptr<bf16_t>()[i] = f32_to_bf16(dense[i]);
    bf16[0].views.push_back(WeightView::of(b));
    bf16[0].values.push_back(b);
    q = Tensor::empty(DType::F8_E4M3, {rows, cols});
    s = Tensor::empty(DType::F32, {(rows + 127) / 128, (cols + 127) / 128});
    for (int64_t br = 0; br < s.dim(0); ++br) {
      for (int64_t bc = 0; bc < s.dim(1); ++bc) {
        float amax = 0;
        for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r)
          for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c)
            amax = std::max(amax, std::fabs(dense[r * cols + c]));
        const float scale = amax / 448.0f;
        s.f32()[br * s.dim(1) + bc] = scale;
        for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r)
          for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c)
            q.ptr<uint8_t>()[r * cols + c] = f32_to_fp8_e4m3(dense[r * cols + c] / scale);
      }
    }
    fp8[0].views.push_back(fp8_block_view(q, s, 128, 128));
    fp8[0].values.push_back(q);
    fp8[0].scales.push_back(s);
    p = Tensor::empty(DType::I32, {rows, cols / 8});
    for (int64_t i = 0; i < p.numel() * 4; ++i)
      p.ptr<uint8_t>()[i] = static_cast<uint8_t>(byte(rng));
    g = Tensor::empty(DType::BF16, {rows, cols / 32});
    for (int64_t i = 0; i < g.numel(); ++i) g.ptr<bf16_t>()[i] = f32_to_bf16(0.02f / 3.0f);
    int4[0].views.push_back(int4_group_view(p, g, rows, cols, 32));
    int4[0].values.push_back(p);
    int4[0].scales.push_back(g);
  }
  using matmul_detail::QuantPath;
  std::vector<Format> formats;
  formats.push_back(bf16[0]);
  formats.back().name = "bf16 (matmul)";
  formats.back().dense = true;
  for (QuantPath path : {QuantPath::kFp32Avx2, QuantPath::kFp32Avx512, QuantPath::kFp8Bf16Avx512}) {
    if (!matmul_detail::quant_path_available(path)) continue;
    formats.push_back(fp8[0]);
    formats.back().name = std::string("fp8 ") + matmul_detail::quant_path_name(path);
    formats.back().path = path;
  }
  for (QuantPath path : {QuantPath::kFp32Avx2, QuantPath::kFp32Avx512, QuantPath::kInt4A8AvxVnni,
                         QuantPath::kInt4A8Avx512Vnni}) {
    if (!matmul_detail::quant_path_available(path)) continue;
    formats.push_back(int4[0]);
    formats.back().name = std::string("int4 ") + matmul_detail::quant_path_name(path);
    formats.back().path = path;
  }
  const int num_formats = static_cast<int>(formats.size());
  for (Format& f : formats) {
    for (const WeightView& v : f.views) f.bytes += static_cast<double>(weight_bytes(v));
  }
  std::vector<float> x(static_cast<size_t>(tokens * cols)), y(static_cast<size_t>(tokens * rows));
  for (float& v : x) v = normal(rng) * 50.0f;  // activations of unit scale
  const double triad = bench_clock::triad_gb_per_s();
  for (int64_t rep = 0; rep <= reps; ++rep) {
    for (int i = 0; i < num_formats; ++i) {
      Format& f = formats[i];
      const double t = bench_clock::now_seconds();
      for (const WeightView& v : f.views) {
        if (f.dense) {
          matmul(x.data(), tokens, v, y.data());
        } else {
          matmul_detail::quant_matmul_path(x.data(), tokens, v, y.data(), f.path);
        }
      }
      if (rep > 0) f.seconds.push_back(bench_clock::seconds_since(t));  // rep 0 warms up
    }
  }
  std::printf("%lld matrices [%lld, %lld], %lld token(s), %d threads, %lld reps (median), %s\n",
              (long long)count, (long long)rows, (long long)cols, (long long)tokens,
              ThreadPool::global().num_threads(), (long long)reps,
              bench_clock::cpu_time ? "thread CPU time" : "wall time");
  std::printf("| format | bytes per pass | ms per pass | GB/s | / triad | speed-up over bf16 |\n");
  std::printf("|---|---|---|---|---|---|\n");
  double bf16_s = 0;
  for (int i = 0; i < num_formats; ++i) {
    Format& f = formats[i];
    std::sort(f.seconds.begin(), f.seconds.end());
    const double s = f.seconds[f.seconds.size() / 2];
    if (bf16_s == 0) bf16_s = s;
    const double gbs = f.bytes / s / 1e9;
    std::printf("| %s | %.1f MB | %.3f | %.2f | %.0f%% | %.2fx |\n", f.name.c_str(), f.bytes / 1e6,
                s * 1e3, gbs, 100.0 * gbs / triad, bf16_s / s);
  }
  std::printf("triad (same threads, same run): %.2f GB/s\n", triad);
  std::printf("CPU features used: %s\n", cpu_features_string(cpu_features()).c_str());
  return 0;
}
