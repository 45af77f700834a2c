#include "server/chat_messages.h"

#include <fmt/format.h>

#include <regex>
#include <string>

#include "server/errors.h"
#include "server/json_fields.h"

namespace epserve {

ChatContentFormat detect_chat_content_format(std::string_view source) {
  for (const char* keyword : {"image", "audio", "video", "vision"}) {
    if (source.find(keyword) != std::string_view::npos) return ChatContentFormat::kOpenai;
  }
  // {% for part in message.content %}, message['content'], possibly filtered or sliced.
  static const std::regex loop_over_content(
      R"(\bfor\s+\w+(\s*,\s*\w+)*\s+in\s+(message|msg|m)\s*(\.\s*content\b|\[\s*['"]content['"]\s*\]))");
  std::string text(source);
  if (std::regex_search(text, loop_over_content)) return ChatContentFormat::kOpenai;
  return ChatContentFormat::kString;
}

namespace {

// The text parts of a list content; 400 for any other part.
std::vector<std::string> text_parts(const json& content, const std::string& where) {
  std::vector<std::string> parts;
  for (const auto& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      bad_request(where +
                      ".content: only text parts ({\"type\": \"text\", \"text\": ...}) are "
                      "supported",
                  "messages");
    }
    parts.push_back(part["text"].get<std::string>());
  }
  return parts;
}

std::string join_with_spaces(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i > 0 ? " " : "") + parts[i];
  return out;
}

}  // namespace

nlohmann::ordered_json template_messages(const json& messages, ChatContentFormat format) {
  if (!messages.is_array() || messages.empty()) {
    bad_request("messages must be a non-empty list", "messages");
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_request(where + " must be an object", "messages");
    check_keys(m, {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"},
               {}, where + ".");
    FieldReader r(m, where + ".");
    std::optional<std::string> role = r.string("role");
    if (!role) bad_request(where + ".role is required", "messages");
    if (*role != "system" && *role != "user" && *role != "assistant" && *role != "tool" &&
        *role != "developer") {
      bad_request(fmt::format("{}.role '{}' is not one of system, developer, user, assistant, "
                              "tool",
                              where, *role),
                  "messages");
    }
    nlohmann::ordered_json message = nlohmann::ordered_json::parse(m.dump());
    if (!r.has("content")) {
      if (*role != "assistant") bad_request(where + ".content is required", "messages");
      message["content"] = "";
    } else if (m["content"].is_array()) {
      std::vector<std::string> parts = text_parts(m["content"], where);
      if (format == ChatContentFormat::kString || *role == "tool") {
        message["content"] = join_with_spaces(parts);
      } else {
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const auto& text : parts) list.push_back({{"type", "text"}, {"text", text}});
        message["content"] = std::move(list);
      }
    } else if (!m["content"].is_string()) {
      bad_request(fmt::format("{}.content: expected a string or a list of parts, got {}", where,
                              json_type_name(m["content"])),
                  "messages");
    }
    out.push_back(std::move(message));
  }
  return out;
}

}  // namespace epserve
