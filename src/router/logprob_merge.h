// With return_logprob, SGLang's PD router puts the prefill server's input_token_logprobs in front
// of the decode server's (meta_info.input_token_logprobs), in a whole response and in each event
// of a stream.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace epserve {

// Prepends `prefill_logprobs` (an array) to body.meta_info.input_token_logprobs when both are
// arrays; false when there was nothing to merge.
bool merge_input_logprobs(const nlohmann::json& prefill_logprobs, nlohmann::json& decode_body);

// Rewrites the "data: {...}" events of a stream as they complete (events end with a blank line);
// other bytes pass unchanged.
class SseLogprobMerger {
 public:
  explicit SseLogprobMerger(nlohmann::json prefill_logprobs)
      : prefill_logprobs_(std::move(prefill_logprobs)) {}
  // The bytes ready to send after `chunk` (whole events only).
  std::string feed(std::string_view chunk);
  // What is left at the end of the stream.
  std::string finish();

 private:
  std::string rewrite(const std::string& event) const;

  nlohmann::json prefill_logprobs_;
  std::string pending_;
};

}  // namespace epserve
