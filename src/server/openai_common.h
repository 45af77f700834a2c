// Pieces the OpenAI routes share: the model-name check, usage, logprob objects in the
// completions and chat formats, finish reasons, and the error a failed choice turns into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/generation.h"
#include "server/json_fields.h"
#include "server/server_context.h"

namespace epserve {

using nlohmann::json;

// OpenAI's "created" timestamp: seconds since the epoch.
int64_t unix_time_now();

// usage: prompt_tokens counts each prompt once (not once per choice), completion_tokens all
// choices; prompt_tokens_details.cached_tokens with --enable-cache-report.
json usage_json(const Generation& generation, int64_t choices_per_prompt, bool cache_report);

// The text of one token as the logprob objects show it (invalid UTF-8 replaced).
std::string token_text(const tokenizer::Tokenizer& tokenizer, int32_t id);

// Completions-style logprobs: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
// Appends to `out` (an object with those four arrays); `offset` is the text offset of the first
// entry and advances.
void append_completion_logprobs(const tokenizer::Tokenizer& tokenizer,
                                const std::vector<LogprobEntry>& entries, int top_n, json& out,
                                int64_t& offset);
json empty_completion_logprobs();

// Chat-style logprobs content: [{"token", "logprob", "bytes", "top_logprobs": [...]}].
json chat_logprobs_content(const tokenizer::Tokenizer& tokenizer,
                           const std::vector<LogprobEntry>& entries, int top_n);

// usage of one choice so far (SGLang's stream_options.continuous_usage_stats): its prompt and
// the tokens it generated.
json choice_usage_json(const ChoiceStream& choice);

// stream_options: include_usage (a last chunk with the usage of the whole request) and
// continuous_usage_stats (each chunk carries its choice's usage so far). 400 without stream.
struct StreamOptions {
  bool include_usage = false;
  bool continuous_usage_stats = false;
};
StreamOptions read_stream_options(const FieldReader& reader, bool stream);

// "stop", "length", or "abort" for a choice ended by /abort_request (as SGLang answers); throws
// the choice's error (ApiError) when it failed.
std::string openai_finish_reason(const ChoiceStream& choice);
// For a stream: the error event of a failed choice.
json stream_error(const ChoiceStream& choice);

}  // namespace epserve
