// Messages between the frontend process (HTTP, tokenizer, detokenizer) and the scheduler that
// leads a group of rank processes, as types both ends share:
//
// frontend -> scheduler (SchedulerMessage): GenerateInput, AbortInput, ControlInput
// scheduler -> frontend (FrontendMessage): OutputBatch (the new tokens of one scheduler step),
//                                          ControlOutput
//
// They travel over ZeroMQ (runtime/ipc.h) as CBOR (nlohmann::json::to_cbor); encode/decode below
// are the only (de)serialisers. Each message is one CBOR object with a "type":
//   {"type": "generate", "input": GenerateInput}
//   {"type": "abort", "rid": string}                 (empty rid: abort everything)
//   {"type": "control", "command": string, "id": uint}
//   {"type": "disagg", "rid": string, "body": object}    (PD disaggregation, src/disagg)
//   {"type": "outputs", "outputs": [TokenOutput, ...]}   (all outputs of one scheduler step)
//   {"type": "control", "id": uint, "result": object}    (id 0: the unsolicited "ready" message)
//   {"type": "disagg", "rid": string, "body": object}
// Endpoints: the frontend binds PUSH <base>-in-<dp_rank> (one per DP group) and PULL <base>-out;
// each group's scheduler connects to them. <base> comes from EPSERVE_IPC_BASE.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"

namespace epserve {

// One image of a request, decoded and preprocessed by the frontend as the model's
// preprocessor_config.json says (Qwen2-VL/Qwen3-VL image processor: smart resize, rescale,
// normalise, patchify): the vision tower's input for that image.
struct ImageInput {
  int64_t grid_t = 1;  // patches along time (a still image: 1, its frame repeated)
  int64_t grid_h = 0;  // patches along height
  int64_t grid_w = 0;  // patches along width
  // [grid_t * grid_h * grid_w, channels * temporal_patch * patch * patch], row-major, rows in
  // the order of HF's image processor (merge-window blocks of spatial_merge^2 patches), as
  // its `pixel_values` for this image.
  std::vector<float> pixel_values;
  uint64_t content_hash = 0;  // of the decoded image; keys the prefix cache
};

struct GenerateInput {
  std::string rid;  // unique per request (one per choice when n > 1)
  std::vector<int32_t> input_ids;
  SamplingParams sampling;
  uint64_t seed = 0;  // sampling seed (the frontend draws one when absent)
  int64_t max_new_tokens = 128;
  int64_t min_new_tokens = 0;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  bool ignore_eos = false;
  bool return_logprob = false;
  int top_logprobs_num = 0;
  int64_t logprob_start_len = -1;  // -1: no input logprobs; else from this prompt position
  // Images, in the order of their runs of image tokens in input_ids: image i is
  // <vision_start> then grid_t*grid_h*grid_w / spatial_merge^2 image tokens then <vision_end>.
  std::vector<ImageInput> images;
  // PD disaggregation (SGLang's bootstrap_host/port/room): the prefill server that computes the
  // prompt's KV cache; room -1: not a disaggregated request.
  std::string bootstrap_host;
  int bootstrap_port = 0;
  int64_t bootstrap_room = -1;
};

// PD disaggregation between a server's frontend and its schedulers (docs/server.md):
// frontend -> prefill scheduler {"target": decode ranks and slots} or {"cancel": true};
// prefill scheduler -> frontend {"transfer": result} or {"drained": true, "room"} (a failed
// transfer's puts can no longer land); decode scheduler -> frontend {"slots": reserved KV
// slots} or {"cancel": true} (the request ended before its KV arrived); frontend -> decode
// scheduler {"received": first token[, "vision": the prompt's rope delta and image hashes,
// runtime/vision_inputs.h]}, {"error": message[, "unsettled": true]} or
// {"released": true} (the pages of an ended request may be freed).
struct DisaggInput {
  std::string rid;
  nlohmann::json body;
};
struct DisaggOutput {
  std::string rid;
  nlohmann::json body;
  // The DP group of the scheduler that sent it (set by the rank process; -1: unknown). Reserved
  // slots are only meaningful in the group that reserved them, and by the time the message
  // arrives the request may be gone from the frontend (aborted), so the frontend must not look
  // the group up by rid.
  int dp_rank = -1;
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
  std::vector<int32_t> token_ids;  // new tokens since the last output of this rid
  std::vector<float> logprobs;     // per new token, when return_logprob
  std::vector<std::vector<TokenLogprob>> top_logprobs;  // per new token, top_logprobs_num each
  // Sent once, with the first output of a request when logprob_start_len >= 0:
  std::vector<float> input_logprobs;  // logprob of prompt token i given the prefix
  std::vector<std::vector<TokenLogprob>> input_top_logprobs;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served from the prefix cache
  bool finished = false;
  std::string finish_reason;        // "stop", "length", "abort" when finished
  int32_t matched_stop_token = -1;  // the stop/EOS token that ended it, if any
  std::string error;                // non-empty: the request failed (finish_reason abort)
  int error_status = 0;             // its HTTP status (0: 400, the request was rejected)
};

// id 0: unsolicited (the "ready" message, load progress), with "dp_rank" in the result.
struct ControlOutput {
  uint64_t id = 0;
  nlohmann::json result;  // flush_cache: {"ok": bool}; get_stats: scheduler statistics
};

// All outputs of one scheduler step.
struct OutputBatch {
  std::vector<TokenOutput> outputs;
};

using SchedulerMessage = std::variant<GenerateInput, AbortInput, ControlInput, DisaggInput>;
using FrontendMessage = std::variant<OutputBatch, ControlOutput, DisaggOutput>;

// The envelopes as CBOR bytes and back; decode throws epserve::Error on a malformed message.
std::string encode(const SchedulerMessage& message);
std::string encode(const FrontendMessage& message);
SchedulerMessage decode_scheduler_message(const std::string& bytes);
FrontendMessage decode_frontend_message(const std::string& bytes);

void to_json(nlohmann::json& j, const SamplingParams& p);
void from_json(const nlohmann::json& j, SamplingParams& p);
void to_json(nlohmann::json& j, const ImageInput& m);
void from_json(const nlohmann::json& j, ImageInput& m);
void to_json(nlohmann::json& j, const GenerateInput& m);
void from_json(const nlohmann::json& j, GenerateInput& m);
void to_json(nlohmann::json& j, const TokenOutput& m);
void from_json(const nlohmann::json& j, TokenOutput& m);

}  // namespace epserve
