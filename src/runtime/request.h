// A request inside the scheduler: its tokens (prompt, then generated), how many of them already
// have KV in the cache, the pages holding them, and its sampler.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "runtime/protocol.h"
#include "runtime/sampler.h"
#include "runtime/vision_inputs.h"

namespace epserve {

struct SchedRequest {
  SchedRequest(GenerateInput input, uint64_t arrival_order)
      : in(std::move(input)),
        tokens(in.input_ids),
        prompt_len(static_cast<int64_t>(in.input_ids.size())),
        sampler(in.sampling, in.seed),
        arrival(arrival_order),
        input_logprobs_pending(in.return_logprob && in.logprob_start_len >= 0) {}

  GenerateInput in;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t prompt_len;
  int64_t num_computed = 0;    // positions 0..num_computed-1 have KV in the cache
  std::vector<int32_t> pages;  // cached-prefix pages first, then the request's own
  void* prefix_pin = nullptr;
  int64_t cached_tokens = 0;  // prompt tokens the prefix cache supplied (first admission)
  bool admitted_once = false;
  Sampler sampler;
  uint64_t arrival;
  TokenOutput pending;          // output gathered this step, sent after it
  bool input_logprobs_pending;  // prompt logprobs asked for and not yet sent
  RequestVision vision;         // 3-D positions and image embeddings (Qwen3-VL)
  // Decode server (PD): when the prefill server's answer (KV flushed into this server's pages,
  // first token sampled) reached this server's frontend, system clock seconds; -1 before that
  // and once the request's first decode step has started.
  double kv_arrived_at = -1;

  int64_t num_generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  // Positions the next forward must compute before a token can be sampled.
  int64_t num_uncomputed() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
  bool wants_input_logprobs() const { return input_logprobs_pending; }
};

}  // namespace epserve
