#include "kernels/cpu/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace epserve {

namespace {

// Indices of the k largest values, largest first, ties to the lower index.
void top_indices(const float* values, int n, int k, int32_t* out, std::vector<int32_t>& order) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  std::copy_n(order.begin(), k, out);
}

void softmax_inplace(float* x, int n) {
  float max_v = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_v);
    sum += x[i];
  }
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

}  // namespace

void route_topk(const RoutingParams& p, const float* logits, int64_t num_tokens, int32_t* topk_ids,
                float* topk_weights) {
  const int E = p.num_experts;
  const int K = p.top_k;
  EPS_CHECK(K > 0 && K <= E && p.n_group > 0 && E % p.n_group == 0,
            "invalid routing parameters: {} experts, top-{}, {} groups", E, K, p.n_group);
  const int group_size = E / p.n_group;
  std::vector<float> scores(E), choice(E), group_scores(p.n_group);
  std::vector<int32_t> order, groups(p.topk_group);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = logits + t * E;
    int32_t* ids = topk_ids + t * K;
    float* weights = topk_weights + t * K;
    if (!p.sigmoid) {
      std::copy_n(row, E, scores.begin());
      softmax_inplace(scores.data(), E);
    } else {
      for (int e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-row[e]));
    }
    for (int e = 0; e < E; ++e) {
      choice[e] = p.correction_bias ? scores[e] + p.correction_bias[e] : scores[e];
    }
    if (p.topk_group < p.n_group) {
      int per_group = std::min(2, group_size);
      int32_t best[2];
      for (int g = 0; g < p.n_group; ++g) {
        top_indices(choice.data() + g * group_size, group_size, per_group, best, order);
        float s = 0.0f;
        for (int i = 0; i < per_group; ++i) s += choice[g * group_size + best[i]];
        group_scores[g] = s;
      }
      top_indices(group_scores.data(), p.n_group, p.topk_group, groups.data(), order);
      std::vector<bool> keep(p.n_group, false);
      for (int32_t g : groups) keep[g] = true;
      for (int e = 0; e < E; ++e) {
        if (!keep[e / group_size]) choice[e] = -std::numeric_limits<float>::infinity();
      }
    }
    top_indices(choice.data(), E, K, ids, order);
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) {
      weights[k] = scores[ids[k]];
      sum += weights[k];
    }
    if (p.norm_topk_prob) {
      float denominator = p.sigmoid ? sum + 1e-20f : sum;
      for (int k = 0; k < K; ++k) weights[k] /= denominator;
    }
    if (p.routed_scaling_factor != 1.0f) {
      for (int k = 0; k < K; ++k) weights[k] *= p.routed_scaling_factor;
    }
  }
}

}  // namespace epserve
