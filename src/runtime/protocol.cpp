#include "runtime/protocol.h"

#include <cstring>
#include <type_traits>

#include "core/error.h"

namespace epserve {

using nlohmann::json;

namespace {

std::string to_bytes(const json& message) {
  std::vector<uint8_t> bytes = json::to_cbor(message);
  return std::string(bytes.begin(), bytes.end());
}

json from_bytes(const std::string& bytes) {
  json message = json::from_cbor(bytes.begin(), bytes.end(), true, false);
  EPS_CHECK(!message.is_discarded() && message.is_object() && message.contains("type"),
            "malformed control-plane message ({} bytes)", bytes.size());
  return message;
}

}  // namespace

std::string encode(const SchedulerMessage& message) {
  return to_bytes(std::visit(
      [](const auto& m) -> json {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, GenerateInput>) {
          return {{"type", "generate"}, {"input", m}};
        } else if constexpr (std::is_same_v<T, AbortInput>) {
          return {{"type", "abort"}, {"rid", m.rid}};
        } else if constexpr (std::is_same_v<T, DisaggInput>) {
          return {{"type", "disagg"}, {"rid", m.rid}, {"body", m.body}};
        } else {
          return {{"type", "control"}, {"command", m.command}, {"id", m.id}};
        }
      },
      message));
}

std::string encode(const FrontendMessage& message) {
  return to_bytes(std::visit(
      [](const auto& m) -> json {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, OutputBatch>) {
          return {{"type", "outputs"}, {"outputs", m.outputs}};
        } else if constexpr (std::is_same_v<T, DisaggOutput>) {
          return {{"type", "disagg"}, {"rid", m.rid}, {"body", m.body}, {"dp_rank", m.dp_rank}};
        } else {
          return {{"type", "control"}, {"id", m.id}, {"result", m.result}};
        }
      },
      message));
}

SchedulerMessage decode_scheduler_message(const std::string& bytes) {
  json m = from_bytes(bytes);
  const std::string type = m.at("type").get<std::string>();
  if (type == "generate") return m.at("input").get<GenerateInput>();
  if (type == "abort") return AbortInput{m.at("rid").get<std::string>()};
  if (type == "disagg") return DisaggInput{m.at("rid").get<std::string>(), m.value("body", json())};
  EPS_CHECK(type == "control", "unknown message type '{}' from the frontend", type);
  return ControlInput{m.at("command").get<std::string>(), m.at("id").get<uint64_t>()};
}

FrontendMessage decode_frontend_message(const std::string& bytes) {
  json m = from_bytes(bytes);
  const std::string type = m.at("type").get<std::string>();
  if (type == "outputs") return OutputBatch{m.at("outputs").get<std::vector<TokenOutput>>()};
  if (type == "disagg")
    return DisaggOutput{m.at("rid").get<std::string>(), m.value("body", json()),
                        m.value("dp_rank", -1)};
  EPS_CHECK(type == "control", "unknown message type '{}' from a scheduler", type);
  return ControlOutput{m.at("id").get<uint64_t>(), m.value("result", json())};
}

void to_json(json& j, const SamplingParams& p) {
  json bias = json::object();
  for (const auto& [id, b] : p.logit_bias) bias[std::to_string(id)] = b;
  j = json{{"temperature", p.temperature},
           {"top_p", p.top_p},
           {"top_k", p.top_k},
           {"min_p", p.min_p},
           {"frequency_penalty", p.frequency_penalty},
           {"presence_penalty", p.presence_penalty},
           {"repetition_penalty", p.repetition_penalty},
           {"logit_bias", bias}};
}

void from_json(const json& j, SamplingParams& p) {
  p.temperature = j.at("temperature").get<float>();
  p.top_p = j.at("top_p").get<float>();
  p.top_k = j.at("top_k").get<int>();
  p.min_p = j.at("min_p").get<float>();
  p.frequency_penalty = j.at("frequency_penalty").get<float>();
  p.presence_penalty = j.at("presence_penalty").get<float>();
  p.repetition_penalty = j.at("repetition_penalty").get<float>();
  p.logit_bias.clear();
  for (const auto& [id, b] : j.at("logit_bias").items()) p.logit_bias[std::stoi(id)] = b;
}

// Pixel values travel as one CBOR byte string of little-endian float32 (x86 only).
void to_json(json& j, const ImageInput& m) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(m.pixel_values.data());
  j = json{{"grid_thw", {m.grid_t, m.grid_h, m.grid_w}},
           {"pixel_values", json::binary(std::vector<uint8_t>(
                                bytes, bytes + m.pixel_values.size() * sizeof(float)))},
           {"content_hash", m.content_hash}};
}

void from_json(const json& j, ImageInput& m) {
  const auto& grid = j.at("grid_thw");
  EPS_CHECK(grid.is_array() && grid.size() == 3, "image grid_thw is not three integers");
  m.grid_t = grid[0].get<int64_t>();
  m.grid_h = grid[1].get<int64_t>();
  m.grid_w = grid[2].get<int64_t>();
  const auto& bytes = j.at("pixel_values").get_binary();
  EPS_CHECK(bytes.size() % sizeof(float) == 0, "image pixel_values is not a float32 array");
  m.pixel_values.resize(bytes.size() / sizeof(float));
  if (!bytes.empty()) std::memcpy(m.pixel_values.data(), bytes.data(), bytes.size());
  j.at("content_hash").get_to(m.content_hash);
}

void to_json(json& j, const GenerateInput& m) {
  j = json{{"rid", m.rid},
           {"input_ids", m.input_ids},
           {"sampling", m.sampling},
           {"seed", m.seed},
           {"max_new_tokens", m.max_new_tokens},
           {"min_new_tokens", m.min_new_tokens},
           {"stop_token_ids", m.stop_token_ids},
           {"ignore_eos", m.ignore_eos},
           {"return_logprob", m.return_logprob},
           {"top_logprobs_num", m.top_logprobs_num},
           {"logprob_start_len", m.logprob_start_len},
           {"bootstrap_host", m.bootstrap_host},
           {"bootstrap_port", m.bootstrap_port},
           {"bootstrap_room", m.bootstrap_room}};
  if (!m.images.empty()) j["images"] = m.images;
}

void from_json(const json& j, GenerateInput& m) {
  j.at("rid").get_to(m.rid);
  j.at("input_ids").get_to(m.input_ids);
  j.at("sampling").get_to(m.sampling);
  j.at("seed").get_to(m.seed);
  j.at("max_new_tokens").get_to(m.max_new_tokens);
  j.at("min_new_tokens").get_to(m.min_new_tokens);
  j.at("stop_token_ids").get_to(m.stop_token_ids);
  j.at("ignore_eos").get_to(m.ignore_eos);
  j.at("return_logprob").get_to(m.return_logprob);
  j.at("top_logprobs_num").get_to(m.top_logprobs_num);
  j.at("logprob_start_len").get_to(m.logprob_start_len);
  m.bootstrap_host = j.value("bootstrap_host", std::string());
  m.bootstrap_port = j.value("bootstrap_port", 0);
  m.bootstrap_room = j.value("bootstrap_room", int64_t{-1});
  m.images.clear();
  if (j.contains("images")) j.at("images").get_to(m.images);
}

namespace {

json top_to_json(const std::vector<std::vector<TokenLogprob>>& top) {
  json out = json::array();
  for (const auto& row : top) {
    json r = json::array();
    for (const auto& t : row) r.push_back({t.id, t.logprob});
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::vector<TokenLogprob>> top_from_json(const json& j) {
  std::vector<std::vector<TokenLogprob>> out;
  for (const auto& r : j) {
    std::vector<TokenLogprob> row;
    for (const auto& t : r) row.push_back({t[0].get<int32_t>(), t[1].get<float>()});
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace

void to_json(json& j, const TokenOutput& m) {
  j = json{{"rid", m.rid},
           {"token_ids", m.token_ids},
           {"logprobs", m.logprobs},
           {"top_logprobs", top_to_json(m.top_logprobs)},
           {"input_logprobs", m.input_logprobs},
           {"input_top_logprobs", top_to_json(m.input_top_logprobs)},
           {"prompt_tokens", m.prompt_tokens},
           {"cached_tokens", m.cached_tokens},
           {"finished", m.finished},
           {"finish_reason", m.finish_reason},
           {"matched_stop_token", m.matched_stop_token},
           {"error", m.error},
           {"error_status", m.error_status}};
}

void from_json(const json& j, TokenOutput& m) {
  j.at("rid").get_to(m.rid);
  j.at("token_ids").get_to(m.token_ids);
  j.at("logprobs").get_to(m.logprobs);
  m.top_logprobs = top_from_json(j.at("top_logprobs"));
  j.at("input_logprobs").get_to(m.input_logprobs);
  m.input_top_logprobs = top_from_json(j.at("input_top_logprobs"));
  j.at("prompt_tokens").get_to(m.prompt_tokens);
  j.at("cached_tokens").get_to(m.cached_tokens);
  j.at("finished").get_to(m.finished);
  j.at("finish_reason").get_to(m.finish_reason);
  j.at("matched_stop_token").get_to(m.matched_stop_token);
  j.at("error").get_to(m.error);
  m.error_status = j.value("error_status", 0);
}

}  // namespace epserve
