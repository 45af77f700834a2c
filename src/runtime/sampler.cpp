#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace epserve {

int32_t argmax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

void log_softmax(const float* logits, int64_t n, float* out) {
  float max_v = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - max_v));
  float log_sum = static_cast<float>(std::log(sum));
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - max_v - log_sum;
}

int32_t Sampler::sample(float* logits, int64_t vocab, const std::vector<int32_t>& prompt,
                        const std::vector<int32_t>& generated) {
  const SamplingParams& p = params_;
  for (const auto& [id, bias] : p.logit_bias) {
    if (id >= 0 && id < vocab) logits[id] += bias;
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : generated) ++counts[t];
    for (const auto& [id, count] : counts) {
      if (id < 0 || id >= vocab) continue;
      logits[id] -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
    }
  }
  if (p.repetition_penalty != 1.0f) {
    std::vector<bool> seen(vocab, false);
    for (int32_t t : prompt) seen[t] = true;
    for (int32_t t : generated) seen[t] = true;
    for (int64_t i = 0; i < vocab; ++i) {
      if (!seen[i]) continue;
      logits[i] =
          logits[i] > 0 ? logits[i] / p.repetition_penalty : logits[i] * p.repetition_penalty;
    }
  }
  if (p.greedy()) return argmax(logits, vocab);

  // Probabilities at the temperature.
  probs_.resize(vocab);
  float max_v = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    probs_[i] = std::exp((logits[i] - max_v) / p.temperature);
    sum += probs_[i];
  }
  for (int64_t i = 0; i < vocab; ++i) probs_[i] = static_cast<float>(probs_[i] / sum);

  // Candidates sorted by probability (ties: lower id first), cut by top-k, top-p, min-p.
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  int64_t keep = vocab;
  if (p.top_k > 0) keep = std::min<int64_t>(keep, p.top_k);
  auto by_prob = [&](int32_t a, int32_t b) {
    return probs_[a] > probs_[b] || (probs_[a] == probs_[b] && a < b);
  };
  if (keep < vocab) {
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), by_prob);
  } else {
    std::sort(order_.begin(), order_.end(), by_prob);
  }
  if (p.top_p < 1.0f) {
    double cumulative = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      cumulative += probs_[order_[i]];
      if (cumulative >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    float threshold = probs_[order_[0]] * p.min_p;
    int64_t n = 1;
    while (n < keep && probs_[order_[n]] >= threshold) ++n;
    keep = n;
  }
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) total += probs_[order_[i]];
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += probs_[order_[i]];
    if (r < acc) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace epserve
