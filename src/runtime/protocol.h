// Messages between the frontend process (HTTP, tokenizer, detokenizer) and the scheduler that
// leads a group of rank processes. They travel over ZeroMQ as CBOR (nlohmann::json::to_cbor);
// to_json/from_json below are the only (de)serialisers.
//
// frontend -> scheduler: GenerateInput, AbortInput, ControlInput
// scheduler -> frontend: TokenOutput (a batch of new tokens of one request), ControlOutput
//
// Each ZeroMQ message is one CBOR object with a "type":
//   {"type": "generate", "input": GenerateInput}
//   {"type": "abort", "rid": string}                 (empty rid: abort everything)
//   {"type": "control", "command": string, "id": uint}
//   {"type": "outputs", "outputs": [TokenOutput, ...]}   (all outputs of one scheduler step)
//   {"type": "control", "id": uint, "result": object}    (id 0: the unsolicited "ready" message)
// Endpoints: the frontend binds PUSH <base>-in-<dp_rank> (one per DP group) and PULL <base>-out;
// each group's scheduler connects to them. <base> comes from EPSERVE_IPC_BASE.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"

namespace epserve {

struct GenerateInput {
  std::string rid;                  // unique per request (one per choice when n > 1)
  std::vector<int32_t> input_ids;
  SamplingParams sampling;
  uint64_t seed = 0;                // sampling seed (the frontend draws one when absent)
  int64_t max_new_tokens = 128;
  int64_t min_new_tokens = 0;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  bool ignore_eos = false;
  bool return_logprob = false;
  int top_logprobs_num = 0;
  int64_t logprob_start_len = -1;   // -1: no input logprobs; else from this prompt position
};

struct AbortInput {
  std::string rid;  // empty: abort everything
};

// flush_cache, get_stats, shutdown
struct ControlInput {
  std::string command;
  uint64_t id = 0;  // echoed in the ControlOutput
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct TokenOutput {
  std::string rid;
  std::vector<int32_t> token_ids;          // new tokens since the last output of this rid
  std::vector<float> logprobs;             // per new token, when return_logprob
  std::vector<std::vector<TokenLogprob>> top_logprobs;  // per new token, top_logprobs_num each
  // Sent once, with the first output of a request when logprob_start_len >= 0:
  std::vector<float> input_logprobs;       // logprob of prompt token i given the prefix
  std::vector<std::vector<TokenLogprob>> input_top_logprobs;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;               // prompt tokens served from the prefix cache
  bool finished = false;
  std::string finish_reason;               // "stop", "length", "abort" when finished
  int32_t matched_stop_token = -1;         // the stop/EOS token that ended it, if any
  std::string error;                       // non-empty: the request failed (finish_reason abort)
};

struct ControlOutput {
  uint64_t id = 0;
  nlohmann::json result;  // flush_cache: {"ok": bool}; get_stats: scheduler statistics
};

// The message envelopes above, as CBOR bytes and back.
std::string encode_message(const nlohmann::json& message);
nlohmann::json decode_message(const void* data, size_t size);

void to_json(nlohmann::json& j, const SamplingParams& p);
void from_json(const nlohmann::json& j, SamplingParams& p);
void to_json(nlohmann::json& j, const GenerateInput& m);
void from_json(const nlohmann::json& j, GenerateInput& m);
void to_json(nlohmann::json& j, const TokenOutput& m);
void from_json(const nlohmann::json& j, TokenOutput& m);

}  // namespace epserve
