// Sampling and stopping fields of a request (both APIs use SGLang's meanings), their checks
// against the model (context length, vocabulary), and the plan that turns prompts into the
// GenerateInputs sent to the scheduler: n choices per prompt, each with its own rid and seed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/choice_stream.h"
#include "server/json_fields.h"
#include "server/server_context.h"

namespace epserve {

struct SamplingRequest {
  SamplingParams params;
  std::optional<int64_t> max_new_tokens;
  std::string max_new_tokens_name = "max_new_tokens";  // the field the client used
  int64_t min_new_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  bool no_stop_trim = false;
  std::optional<uint64_t> seed;
  int64_t n = 1;
  bool return_logprob = false;
  int top_logprobs_num = 0;
  int64_t logprob_start_len = -1;
  // PD disaggregation: SGLang's bootstrap_host, bootstrap_port, bootstrap_room (the router adds
  // them); room -1: absent.
  std::string bootstrap_host;
  int bootstrap_port = 0;
  int64_t bootstrap_room = -1;
  // SGLang's data_parallel_rank (or routed_dp_rank, its newer name): the DP group that serves
  // the request; -1: absent (--load-balance-method picks).
  int64_t data_parallel_rank = -1;
};

// Reads the fields whose names both APIs share: temperature, top_p, top_k, min_p,
// frequency_penalty, presence_penalty, repetition_penalty, stop, stop_token_ids, ignore_eos,
// skip_special_tokens, no_stop_trim, logit_bias, n, seed.
void read_sampling_fields(const FieldReader& reader, SamplingRequest& sampling);
// Reads bootstrap_host, bootstrap_port and bootstrap_room (one request: a room is an integer),
// and data_parallel_rank / routed_dp_rank (an integer; null is absent).
void read_bootstrap_fields(const FieldReader& reader, SamplingRequest& sampling);

struct GenerationPlan {
  std::vector<GenerateInput> inputs;  // prompt-major: prompt p's choice j at p * n + j
  std::vector<ChoiceOptions> options;
  int dp_rank = -1;  // the DP group every input goes to; -1: the frontend picks
};

// Checks the prompts and the sampling against the model and builds the inputs. When
// max_new_tokens is absent, `default_max_new_tokens` is used (-1: what the context leaves).
// Errors are 400s with SGLang's messages (a data_parallel_rank outside [0, DP groups) included).
GenerationPlan plan_generation(ServerContext& ctx, const std::vector<std::vector<int32_t>>& prompts,
                               const SamplingRequest& sampling, int64_t default_max_new_tokens,
                               const std::string& rid_base);

// A fresh random id ("<prefix><32 hex digits>").
std::string make_request_id(const std::string& prefix);

}  // namespace epserve
