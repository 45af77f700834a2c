// Routed-expert matmuls at decode batch sizes with BF16, FP8 block-scaled (DeepSeek-V3) and
// packed INT4 (Kimi-K2-Thinking) weights: the part of a decode step that the quantized formats
// shrink. Many distinct expert matrices (far more bytes than the caches) are multiplied in turn,
// as a decode step walks its experts; the formats are interleaved in every repetition so they
// see the same machine load. Prints time per pass, bytes read per token-pass (values + scales),
// the speed-up over BF16 and the weight bandwidth beside a STREAM triad measured in the same run.
//
//   quant_matmul_bench [--rows R] [--cols C] [--mb BF16_MB] [--reps N] [--threads T] [--tokens T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_quant.h"
#include "kernels/cpu/vector_paths.h"

using namespace epserve;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double triad_gb_per_s() {
  const int64_t n = int64_t{48} << 20;
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t = std::chrono::steady_clock::now();
    ThreadPool::global().parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) a[i] = b[i] + 3.0f * c[i];
    });
    best = std::max(best, 3.0 * n * sizeof(float) / seconds_since(t) / 1e9);
  }
  return best;
}

struct Format {
  const char* name;
  std::vector<Tensor> values, scales;
  std::vector<WeightView> views;
  double bytes = 0;
  std::vector<double> seconds;
  matmul_detail::QuantRowsFn kernel = nullptr;  // nullptr: what matmul() picks
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
  }
  if (threads > 0) ThreadPool::set_global_threads(static_cast<int>(threads));
  const int64_t count = std::max<int64_t>(1, (mb << 20) / (rows * cols * 2));
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255);
  // fp8 and int4 twice: the AVX2 kernel, then the AVX-512 one (the default where the CPU has it).
  Format formats[5] = {{"bf16"}, {"fp8 avx2"}, {"fp8 avx512"}, {"int4 avx2"}, {"int4 avx512"}};
  for (int64_t m = 0; m < count; ++m) {
    Tensor b = Tensor::empty(DType::BF16, {rows, cols});
    for (int64_t i = 0; i < b.numel(); ++i)
      b.ptr<bf16_t>()[i] = f32_to_bf16((byte(rng) - 128) / 512.0f);
    formats[0].views.push_back(WeightView::of(b));
    formats[0].values.push_back(b);
    Tensor q = Tensor::empty(DType::F8_E4M3, {rows, cols});
    for (int64_t i = 0; i < q.numel(); ++i)
      q.ptr<uint8_t>()[i] = static_cast<uint8_t>(byte(rng) & 0x7e);
    Tensor s = Tensor::empty(DType::F32, {(rows + 127) / 128, (cols + 127) / 128});
    for (int64_t i = 0; i < s.numel(); ++i) s.f32()[i] = 1e-3f;
    formats[1].views.push_back(fp8_block_view(q, s, 128, 128));
    formats[1].values.push_back(q);
    formats[1].scales.push_back(s);
    Tensor p = Tensor::empty(DType::I32, {rows, cols / 8});
    for (int64_t i = 0; i < p.numel() * 4; ++i)
      p.ptr<uint8_t>()[i] = static_cast<uint8_t>(byte(rng));
    Tensor g = Tensor::empty(DType::BF16, {rows, cols / 32});
    for (int64_t i = 0; i < g.numel(); ++i) g.ptr<bf16_t>()[i] = f32_to_bf16(1e-2f);
    formats[3].views.push_back(int4_group_view(p, g, rows, cols, 32));
    formats[3].values.push_back(p);
    formats[3].scales.push_back(g);
  }
  formats[2].views = formats[1].views;
  formats[4].views = formats[3].views;
  formats[1].kernel = formats[3].kernel = matmul_detail::quant_rows_avx2;
  formats[2].kernel = formats[4].kernel = matmul_detail::quant_rows_avx512;
  const int num_formats = cpu_has_avx512() ? 5 : 4;
  if (num_formats == 4) formats[2] = std::move(formats[3]);  // no AVX-512: bf16, fp8, int4 on AVX2
  for (int i = 0; i < num_formats; ++i) {
    Format& f = formats[i];
    for (const WeightView& v : f.views) f.bytes += static_cast<double>(weight_bytes(v));
  }
  std::vector<float> x(static_cast<size_t>(tokens * cols), 0.5f),
      y(static_cast<size_t>(tokens * rows));
  const double triad = triad_gb_per_s();
  for (int64_t rep = 0; rep <= reps; ++rep) {
    for (int i = 0; i < num_formats; ++i) {
      Format& f = formats[i];
      auto t = std::chrono::steady_clock::now();
      for (const WeightView& v : f.views) {
        if (f.kernel == nullptr) {
          matmul(x.data(), tokens, v, y.data());
        } else {
          matmul_detail::quant_matmul_with(x.data(), tokens, v, y.data(), f.kernel);
        }
      }
      if (rep > 0) f.seconds.push_back(seconds_since(t));  // rep 0 warms up
    }
  }
  std::printf("%lld matrices [%lld, %lld], %lld token(s), %d threads, %lld reps (median)\n",
              (long long)count, (long long)rows, (long long)cols, (long long)tokens,
              ThreadPool::global().num_threads(), (long long)reps);
  std::printf("| format | bytes per pass | ms per pass | GB/s | / triad | speed-up over bf16 |\n");
  std::printf("|---|---|---|---|---|---|\n");
  double bf16_s = 0;
  for (int i = 0; i < num_formats; ++i) {
    Format& f = formats[i];
    std::sort(f.seconds.begin(), f.seconds.end());
    const double s = f.seconds[f.seconds.size() / 2];
    if (bf16_s == 0) bf16_s = s;
    const double gbs = f.bytes / s / 1e9;
    std::printf("| %s | %.1f MB | %.2f | %.2f | %.0f%% | %.2fx |\n", f.name, f.bytes / 1e6, s * 1e3,
                gbs, 100.0 * gbs / triad, bf16_s / s);
  }
  std::printf("triad (same threads, same run): %.2f GB/s\n", triad);
  return 0;
}
