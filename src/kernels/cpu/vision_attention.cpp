#include "kernels/cpu/vision_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/matmul.h"

namespace epserve {
namespace {

// One head's operands and scratch, per thread.
struct HeadScratch {
  std::vector<float> q;       // [n, hd], scaled
  std::vector<float> kt;      // [hd, n]
  std::vector<float> v;       // [n, hd]
  std::vector<float> scores;  // [block, n]
};
thread_local HeadScratch t_scratch;

void attend_head(const float* qkv, int64_t n, int64_t heads, int64_t hd, float scale, int64_t head,
                 float* out) {
  const int64_t D = heads * hd;
  HeadScratch& s = t_scratch;
  const int64_t block = std::min(n, kVisionQueryBlock);
  s.q.resize(n * hd);
  s.kt.resize(hd * n);
  s.v.resize(n * hd);
  s.scores.resize(block * n);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = qkv + i * 3 * D + head * hd;
    for (int64_t d = 0; d < hd; ++d) s.q[i * hd + d] = row[d] * scale;
    for (int64_t d = 0; d < hd; ++d) s.kt[d * n + i] = row[D + d];
    std::copy_n(row + 2 * D, hd, s.v.data() + i * hd);
  }
  const WeightView keys{DType::F32, s.kt.data(), hd, n, n};  // [hd, n]
  const WeightView values{DType::F32, s.v.data(), n, hd, hd};
  const auto softmax = attention_detail::avx2_available() ? attention_detail::softmax_rows_avx2
                                                          : attention_detail::softmax_rows_scalar;
  for (int64_t i0 = 0; i0 < n; i0 += block) {
    const int64_t rows = std::min(block, n - i0);
    // [rows, n] = (scale q) k^T
    matmul_untransposed(s.q.data() + i0 * hd, hd, rows, keys, s.scores.data(), n);
    softmax(s.scores.data(), n, rows, n);
    // [rows, hd] = p v, into the head's columns of out
    matmul_untransposed(s.scores.data(), n, rows, values, out + i0 * D + head * hd, D);
  }
}

}  // namespace

void vision_attention(const float* qkv, int64_t n, int64_t heads, int64_t head_dim, float scale,
                      float* out) {
  if (n <= 0 || heads <= 0) return;
  // Several chunks per thread: a thread that runs ahead takes the heads of a descheduled one.
  ThreadPool::global().parallel_for(
      heads,
      [&](int64_t h0, int64_t h1) {
        for (int64_t h = h0; h < h1; ++h) attend_head(qkv, n, heads, head_dim, scale, h, out);
      },
      1, 4);
}

void vision_attention_reference(const float* qkv, int64_t n, int64_t heads, int64_t head_dim,
                                float scale, float* out) {
  const int64_t D = heads * head_dim;
  std::vector<double> p(n);
  for (int64_t head = 0; head < heads; ++head) {
    for (int64_t i = 0; i < n; ++i) {
      const float* q = qkv + i * 3 * D + head * head_dim;
      double m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* k = qkv + j * 3 * D + D + head * head_dim;
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
        p[j] = dot * scale;
        m = std::max(m, p[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - m));
      for (int64_t d = 0; d < head_dim; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j < n; ++j) acc += p[j] * qkv[j * 3 * D + 2 * D + head * head_dim + d];
        out[i * D + head * head_dim + d] = static_cast<float>(acc / sum);
      }
    }
  }
}

}  // namespace epserve
