// Offline generation for `epserve generate` and bench-one-batch: all prompts are prefilled in
// one forward batch, then decoded together one token per step until each stops (max_new_tokens,
// or an EOS token unless ignore_eos).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "runtime/model_runner.h"
#include "runtime/protocol.h"
#include "runtime/sampler.h"

namespace epserve {

struct GenerateRequest {
  std::vector<int32_t> input_ids;
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool return_logits = false;         // the distribution behind each generated token
  bool return_prompt_logits = false;  // logits at every prompt position
  std::vector<ImageInput> images;     // Qwen3-VL: one per image-token run of input_ids
};

struct GenerateResult {
  std::vector<int32_t> output_ids;
  std::vector<std::vector<float>> logits;         // [generated][vocab]
  std::vector<std::vector<float>> prompt_logits;  // [prompt_len][vocab]
  std::string finish_reason;                      // "length" or "stop"
};

struct GenerateTimings {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  // Of which spent in communication between ranks (core/phase_timer.h "comm").
  double prefill_comm_seconds = 0;
  double decode_comm_seconds = 0;
};

class Communicator;

// Runs on `runner` (whose KV cache must hold kv_slots_needed(requests, page_size) slots). With
// DP attention, `lockstep` joins the leaders of all attention groups: each generates its own
// requests, and a group that is done joins the others' forwards with empty batches until all are.
std::vector<GenerateResult> generate(ModelRunner& runner,
                                     const std::vector<GenerateRequest>& requests,
                                     GenerateTimings* timings = nullptr, int64_t page_size = 16,
                                     Communicator* lockstep = nullptr);
// Runs on `model` in this process with a KV cache sized for the requests.
std::vector<GenerateResult> generate(CausalLM& model, const std::vector<GenerateRequest>& requests,
                                     GenerateTimings* timings = nullptr, int64_t page_size = 16);

int64_t kv_slots_needed(const std::vector<GenerateRequest>& requests, int64_t page_size);

}  // namespace epserve
