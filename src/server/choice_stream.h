// One generated sequence (a "choice") as the API shows it: the scheduler's token outputs turned
// into text by the incremental detokenizer, stop strings applied (text that could begin one is
// held back; a match ends the choice), the stop/EOS token hidden from the text as SGLang does,
// and the token ids, logprobs and counts accumulated for the response.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/protocol.h"
#include "server/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace epserve {

struct ChoiceOptions {
  std::vector<std::string> stop;
  bool no_stop_trim = false;
  bool skip_special_tokens = true;
  int64_t max_new_tokens = 0;  // for SGLang's finish_reason {"type": "length", "length": N}
};

struct LogprobEntry {
  int32_t id = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

struct ChoiceUpdate {
  std::string text;                    // newly visible text
  std::vector<int32_t> token_ids;      // new output tokens
  std::vector<LogprobEntry> logprobs;  // one per new token, when logprobs were asked for
  bool finished = false;
};

class ChoiceStream {
 public:
  ChoiceStream(const tokenizer::Tokenizer& tokenizer, ChoiceOptions options);

  // Applies one output of the scheduler. When a stop string matches, the update is the last
  // (finished, reason "stop") and stop_string_hit() tells the caller to abort the request.
  // `error_status`: the HTTP status of a failed output (0: the scheduler rejected the request,
  // reported as 400).
  ChoiceUpdate apply(const TokenOutput& output, int error_status = 0);

  bool finished() const { return finished_; }
  bool stop_string_hit() const { return stop_.matched(); }
  const std::string& text() const { return text_; }
  const std::vector<int32_t>& output_ids() const { return output_ids_; }
  const std::vector<LogprobEntry>& logprobs() const { return logprobs_; }
  const std::vector<float>& input_logprobs() const { return input_logprobs_; }
  const std::vector<std::vector<TokenLogprob>>& input_top_logprobs() const {
    return input_top_logprobs_;
  }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t cached_tokens() const { return cached_tokens_; }
  int64_t completion_tokens() const { return static_cast<int64_t>(output_ids_.size()); }
  // "stop", "length" or "abort" once finished.
  const std::string& finish_reason() const { return finish_reason_; }
  // Ended by an error (the scheduler refused it, or the server failed), not by /abort_request:
  // SGLang answers those with an error; a plain abort answers with finish_reason "abort".
  bool failed() const { return finish_reason_ == "abort" && !error_.empty(); }
  const std::string& error() const { return error_; }
  // The HTTP status for error().
  int error_status() const { return error_status_ > 0 ? error_status_ : 400; }
  // The stop string or token id that ended the choice (SGLang's matched_stop), else null.
  nlohmann::json matched_stop() const;
  // SGLang's meta_info.finish_reason: {"type": "stop", "matched": ...}, {"type": "length",
  // "length": N}, {"type": "abort", "message", "status_code", "err_type"}; null while running.
  nlohmann::json sglang_finish_reason() const;

 private:
  void finish(const std::string& reason, ChoiceUpdate& update);

  tokenizer::IncrementalDetokenizer detokenizer_;
  StopStringFilter stop_;
  ChoiceOptions options_;
  std::string text_;
  std::vector<int32_t> output_ids_;
  std::vector<LogprobEntry> logprobs_;
  std::vector<float> input_logprobs_;
  std::vector<std::vector<TokenLogprob>> input_top_logprobs_;
  int64_t prompt_tokens_ = 0;
  int64_t cached_tokens_ = 0;
  bool finished_ = false;
  std::string finish_reason_;
  std::string error_;
  int error_status_ = 0;
  int32_t matched_token_ = -1;
};

}  // namespace epserve
