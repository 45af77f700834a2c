#include "kernels/cpu/routing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

namespace epserve {
namespace {

// Brute force for sigmoid group-limited routing: enumerate every choice of topk_group groups,
// keep the set whose groups have the best (sum of top-2) scores, then pick top-k inside.
std::set<int> brute_force_deepseek(const std::vector<float>& logits, const std::vector<float>& bias,
                                   int n_group, int topk_group, int top_k) {
  int E = static_cast<int>(logits.size());
  int gs = E / n_group;
  std::vector<float> choice(E);
  for (int e = 0; e < E; ++e) choice[e] = 1.0f / (1.0f + std::exp(-logits[e])) + bias[e];
  std::vector<std::pair<float, int>> group_score;
  for (int g = 0; g < n_group; ++g) {
    std::vector<float> v(choice.begin() + g * gs, choice.begin() + (g + 1) * gs);
    std::sort(v.rbegin(), v.rend());
    group_score.push_back({v[0] + (gs > 1 ? v[1] : 0.0f), g});
  }
  std::sort(group_score.begin(), group_score.end(),
            [](auto a, auto b) { return a.first > b.first; });
  std::vector<std::pair<float, int>> candidates;
  for (int i = 0; i < topk_group; ++i) {
    int g = group_score[i].second;
    for (int e = g * gs; e < (g + 1) * gs; ++e) candidates.push_back({choice[e], e});
  }
  std::sort(candidates.begin(), candidates.end(), [](auto a, auto b) { return a.first > b.first; });
  std::set<int> out;
  for (int k = 0; k < top_k; ++k) out.insert(candidates[k].second);
  return out;
}

TEST(Routing, DeepseekGroupLimitedMatchesBruteForce) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int E = 32, K = 6, G = 8, TG = 3;
    std::vector<float> logits(E), bias(E);
    for (auto& v : logits) v = normal(rng);
    for (auto& v : bias) v = normal(rng) * 0.1f;
    RoutingParams p;
    p.num_experts = E;
    p.top_k = K;
    p.n_group = G;
    p.topk_group = TG;
    p.sigmoid = true;
    p.norm_topk_prob = true;
    p.routed_scaling_factor = 2.5f;
    p.correction_bias = bias.data();
    std::vector<int32_t> ids(K);
    std::vector<float> weights(K);
    route_topk(p, logits.data(), 1, ids.data(), weights.data());
    EXPECT_EQ(std::set<int>(ids.begin(), ids.end()), brute_force_deepseek(logits, bias, G, TG, K));
    // Weights: unbiased sigmoid scores, renormalised, times 2.5; sum is 2.5.
    float sum = 0.0f, sig_sum = 0.0f;
    for (int k = 0; k < K; ++k) {
      sum += weights[k];
      sig_sum += 1.0f / (1.0f + std::exp(-logits[ids[k]]));
    }
    EXPECT_NEAR(sum, 2.5f, 1e-5f);
    for (int k = 0; k < K; ++k) {
      float s = 1.0f / (1.0f + std::exp(-logits[ids[k]]));
      EXPECT_NEAR(weights[k], s / sig_sum * 2.5f, 1e-6f);
    }
    // Descending by biased score.
    for (int k = 1; k < K; ++k) {
      float a = 1.0f / (1.0f + std::exp(-logits[ids[k - 1]])) + bias[ids[k - 1]];
      float b = 1.0f / (1.0f + std::exp(-logits[ids[k]])) + bias[ids[k]];
      EXPECT_GE(a, b);
    }
  }
}

TEST(Routing, SoftmaxTopKRenormalised) {
  RoutingParams p;
  p.num_experts = 4;
  p.top_k = 2;
  p.sigmoid = false;
  p.norm_topk_prob = true;
  float logits[4] = {0.0f, 2.0f, 1.0f, -1.0f};
  int32_t ids[2];
  float w[2];
  route_topk(p, logits, 1, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 2);
  EXPECT_NEAR(w[0], std::exp(2.0f) / (std::exp(2.0f) + std::exp(1.0f)), 1e-6f);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6f);
  p.norm_topk_prob = false;
  route_topk(p, logits, 1, ids, w);
  float z = std::exp(0.0f) + std::exp(2.0f) + std::exp(1.0f) + std::exp(-1.0f);
  EXPECT_NEAR(w[0], std::exp(2.0f) / z, 1e-6f);
}

TEST(Routing, TiesGoToTheLowerExpertId) {
  RoutingParams p;
  p.num_experts = 4;
  p.top_k = 2;
  float logits[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  int32_t ids[2];
  float w[2];
  route_topk(p, logits, 1, ids, w);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 1);
}

}  // namespace
}  // namespace epserve
