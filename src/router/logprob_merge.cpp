#include "router/logprob_merge.h"

namespace epserve {

using json = nlohmann::json;

bool merge_input_logprobs(const json& prefill_logprobs, json& decode_body) {
  if (!prefill_logprobs.is_array() || !decode_body.is_object()) return false;
  auto meta = decode_body.find("meta_info");
  if (meta == decode_body.end() || !meta->is_object()) return false;
  auto logprobs = meta->find("input_token_logprobs");
  if (logprobs == meta->end() || !logprobs->is_array()) return false;
  json merged = prefill_logprobs;
  for (auto& item : *logprobs) merged.push_back(item);
  *logprobs = std::move(merged);
  return true;
}

std::string SseLogprobMerger::feed(std::string_view chunk) {
  pending_.append(chunk);
  std::string out;
  size_t end;
  while ((end = pending_.find("\n\n")) != std::string::npos) {
    out += rewrite(pending_.substr(0, end + 2));
    pending_.erase(0, end + 2);
  }
  return out;
}

std::string SseLogprobMerger::finish() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

std::string SseLogprobMerger::rewrite(const std::string& event) const {
  const std::string prefix = "data: ";
  if (event.rfind(prefix, 0) != 0 || event.find("[DONE]") != std::string::npos) return event;
  json body = json::parse(event.substr(prefix.size()), nullptr, false);
  if (body.is_discarded() || !merge_input_logprobs(prefill_logprobs_, body)) return event;
  return prefix + body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace epserve
