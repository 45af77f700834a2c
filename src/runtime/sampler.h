// Choosing the next token from logits, as SGLang's sampler does: penalties on the raw logits,
// temperature (below 1e-5 means greedy), then top-k, top-p and min-p filtering of the
// probabilities, then a draw from a per-request generator (seeded for reproducibility).
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

namespace epserve {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = -1;  // -1 or 0: no limit
  float min_p = 0.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  std::unordered_map<int32_t, float> logit_bias;

  bool greedy() const { return temperature < 1e-5f || top_k == 1; }
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, uint64_t seed) : params_(params), rng_(seed) {}

  // logits [vocab] (modified in place by penalties and bias); `history` holds the tokens
  // generated so far (frequency/presence penalties) and the prompt (repetition penalty).
  int32_t sample(float* logits, int64_t vocab, const std::vector<int32_t>& prompt,
                 const std::vector<int32_t>& generated);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;
  std::vector<int32_t> order_;
};

// The index of the largest value (ties: the lowest index).
int32_t argmax(const float* values, int64_t n);

// log_softmax of logits into out.
void log_softmax(const float* logits, int64_t n, float* out);

}  // namespace epserve
