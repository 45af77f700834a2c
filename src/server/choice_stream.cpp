#include "server/choice_stream.h"

namespace epserve {

using nlohmann::json;

ChoiceStream::ChoiceStream(const tokenizer::Tokenizer& tokenizer, ChoiceOptions options)
    : detokenizer_(tokenizer, options.skip_special_tokens),
      stop_(options.stop, options.no_stop_trim),
      options_(std::move(options)) {}

ChoiceUpdate ChoiceStream::apply(const TokenOutput& output, int error_status) {
  ChoiceUpdate update;
  if (finished_) return update;
  if (output.prompt_tokens > 0) prompt_tokens_ = output.prompt_tokens;
  if (output.cached_tokens > 0) cached_tokens_ = output.cached_tokens;
  if (!output.input_logprobs.empty()) input_logprobs_ = output.input_logprobs;
  if (!output.input_top_logprobs.empty()) input_top_logprobs_ = output.input_top_logprobs;

  // The token that matched a stop token id (or EOS) is kept in the ids but not shown as text.
  size_t n = output.token_ids.size();
  bool hide_last = output.finished && output.finish_reason == "stop" &&
                   output.matched_stop_token >= 0 && !options_.no_stop_trim && n > 0 &&
                   output.token_ids.back() == output.matched_stop_token;
  for (size_t i = 0; i < n; ++i) {
    int32_t id = output.token_ids[i];
    output_ids_.push_back(id);
    update.token_ids.push_back(id);
    if (i < output.logprobs.size()) {
      LogprobEntry entry{id, output.logprobs[i], {}};
      if (i < output.top_logprobs.size()) entry.top = output.top_logprobs[i];
      logprobs_.push_back(entry);
      update.logprobs.push_back(std::move(entry));
    }
    if (hide_last && i + 1 == n) break;
    update.text += stop_.feed(detokenizer_.step(id));
    if (stop_.matched()) {
      // Tokens after the one that completed the stop string are not part of the choice.
      finish("stop", update);
      text_ += update.text;
      return update;
    }
  }
  if (output.finished) {
    error_ = output.error;
    error_status_ = error_status;
    if (output.finish_reason == "stop") matched_token_ = output.matched_stop_token;
    finish(output.finish_reason.empty() ? std::string("abort") : output.finish_reason, update);
  }
  text_ += update.text;
  return update;
}

void ChoiceStream::finish(const std::string& reason, ChoiceUpdate& update) {
  if (!stop_.matched()) {
    update.text += stop_.feed(detokenizer_.finish());
    update.text += stop_.flush();
  }
  finished_ = true;
  finish_reason_ = reason;
  update.finished = true;
}

nlohmann::json ChoiceStream::matched_stop() const {
  if (stop_.matched()) return stop_.matched_stop();
  if (finished_ && finish_reason_ == "stop" && matched_token_ >= 0) return matched_token_;
  return nullptr;
}

nlohmann::json ChoiceStream::sglang_finish_reason() const {
  if (!finished_) return nullptr;
  if (finish_reason_ == "length") {
    return {{"type", "length"}, {"length", options_.max_new_tokens}};
  }
  if (finish_reason_ == "stop") return {{"type", "stop"}, {"matched", matched_stop()}};
  return {{"type", "abort"},
          {"message", error_.empty() ? "Aborted" : error_},
          {"status_code", failed() ? json(error_status()) : json(nullptr)},
          {"err_type", nullptr}};
}

}  // namespace epserve
