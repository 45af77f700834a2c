#include "server/openai_common.h"

#include <chrono>
#include <cmath>

#include "server/errors.h"

namespace epserve {

int64_t unix_time_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json usage_json(const Generation& g, int64_t choices_per_prompt, bool cache_report) {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const ChoiceStream& c = g.choice(i);
    completion += c.completion_tokens();
    if (i % static_cast<size_t>(choices_per_prompt) == 0) {
      prompt += c.prompt_tokens();
      cached += c.cached_tokens();
    }
  }
  json usage = {{"prompt_tokens", prompt},
                {"completion_tokens", completion},
                {"total_tokens", prompt + completion}};
  if (cache_report) usage["prompt_tokens_details"] = {{"cached_tokens", cached}};
  return usage;
}

std::string token_text(const tokenizer::Tokenizer& tokenizer, int32_t id) {
  int32_t ids[1] = {id};
  return tokenizer.decode(ids, false);
}

namespace {

// JSON has no -inf; a logprob of -inf (a token the sampler excluded) is shown as -9999 like
// OpenAI and vLLM do.
double finite(float logprob) {
  return std::isfinite(logprob) ? logprob : -9999.0;
}

}  // namespace

json empty_completion_logprobs() {
  return {{"tokens", json::array()},
          {"token_logprobs", json::array()},
          {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
}

void append_completion_logprobs(const tokenizer::Tokenizer& tokenizer,
                                const std::vector<LogprobEntry>& entries, int top_n, json& out,
                                int64_t& offset) {
  for (const LogprobEntry& e : entries) {
    std::string text = token_text(tokenizer, e.id);
    out["tokens"].push_back(text);
    out["token_logprobs"].push_back(finite(e.logprob));
    json top = json::object();
    for (size_t k = 0; k < e.top.size() && static_cast<int>(k) < top_n; ++k) {
      top[token_text(tokenizer, e.top[k].id)] = finite(e.top[k].logprob);
    }
    out["top_logprobs"].push_back(top_n > 0 ? top : json(nullptr));
    out["text_offset"].push_back(offset);
    offset += static_cast<int64_t>(text.size());
  }
}

json chat_logprobs_content(const tokenizer::Tokenizer& tokenizer,
                           const std::vector<LogprobEntry>& entries, int top_n) {
  auto item = [&](int32_t id, float logprob) {
    std::string_view raw = tokenizer.token_bytes(id);
    json bytes = json::array();
    for (unsigned char b : raw) bytes.push_back(b);
    return json{
        {"token", token_text(tokenizer, id)}, {"logprob", finite(logprob)}, {"bytes", bytes}};
  };
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json entry = item(e.id, e.logprob);
    json top = json::array();
    for (size_t k = 0; k < e.top.size() && static_cast<int>(k) < top_n; ++k) {
      top.push_back(item(e.top[k].id, e.top[k].logprob));
    }
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return content;
}

json choice_usage_json(const ChoiceStream& choice) {
  return {{"prompt_tokens", choice.prompt_tokens()},
          {"completion_tokens", choice.completion_tokens()},
          {"total_tokens", choice.prompt_tokens() + choice.completion_tokens()}};
}

StreamOptions read_stream_options(const FieldReader& r, bool stream) {
  StreamOptions out;
  const json* options = r.object("stream_options");
  if (options == nullptr) return out;
  if (!stream) bad_request("stream_options is only allowed with stream", "stream_options");
  check_keys(*options, {"include_usage", "continuous_usage_stats"}, {}, "stream_options.");
  FieldReader o(*options, "stream_options.");
  out.include_usage = o.boolean("include_usage").value_or(false);
  out.continuous_usage_stats = o.boolean("continuous_usage_stats").value_or(false);
  return out;
}

std::string openai_finish_reason(const ChoiceStream& choice) {
  if (!choice.failed()) return choice.finish_reason();
  throw ApiError(choice.error_status(),
                 choice.error().empty() ? "the request was aborted" : choice.error());
}

json stream_error(const ChoiceStream& choice) {
  int status = choice.error_status();
  std::string message = choice.error().empty() ? "the request was aborted" : choice.error();
  return {{"error",
           {{"message", message},
            {"type", error_type_for_status(status)},
            {"param", nullptr},
            {"code", nullptr}}}};
}

}  // namespace epserve
