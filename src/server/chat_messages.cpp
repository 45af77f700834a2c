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

// A list content's parts: text, or (in user messages) images, whose URLs go to `image_urls`;
// 400 for any other part.
struct Part {
  bool image = false;
  std::string text;
};

std::vector<Part> content_parts(const json& content, const std::string& where, bool user,
                                std::vector<std::string>* image_urls) {
  std::vector<Part> parts;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string type = part.is_object() ? part.value("type", "") : "";
    if (type == "image_url") {
      std::string at = fmt::format("{}.content[{}]", where, i);
      if (!image_urls) {
        bad_request(at + ": this model does not take images (its config.json has no "
                         "vision_config)",
                    "messages");
      }
      if (!user) bad_request(at + ": images are accepted in user messages only", "messages");
      const json* url = part.contains("image_url") && part["image_url"].is_object() &&
                                part["image_url"].contains("url")
                            ? &part["image_url"]["url"]
                            : nullptr;
      if (!url || !url->is_string()) {
        bad_request(at + ": an image_url part needs {\"image_url\": {\"url\": \"data:...\"}}",
                    "messages");
      }
      image_urls->push_back(url->get<std::string>());
      parts.push_back({true, ""});
      continue;
    }
    if (type != "text" || !part.contains("text") || !part["text"].is_string()) {
      bad_request(where +
                      ".content: only text parts ({\"type\": \"text\", \"text\": ...}) and "
                      "image_url parts are supported",
                  "messages");
    }
    parts.push_back({false, part["text"].get<std::string>()});
  }
  return parts;
}

std::string join_with_spaces(const std::vector<Part>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i > 0 ? " " : "") + parts[i].text;
  return out;
}

}  // namespace

nlohmann::ordered_json template_messages(const json& messages, ChatContentFormat format,
                                         std::vector<std::string>* image_urls) {
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
      size_t images_before = image_urls ? image_urls->size() : 0;
      std::vector<Part> parts = content_parts(m["content"], where, *role == "user", image_urls);
      bool has_images = image_urls && image_urls->size() > images_before;
      if (has_images && format == ChatContentFormat::kString) {
        bad_request(where +
                        ".content: the chat template takes string content, so it cannot "
                        "place images",
                    "messages");
      }
      if (format == ChatContentFormat::kString || *role == "tool") {
        message["content"] = join_with_spaces(parts);
      } else {
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const auto& part : parts) {
          if (part.image) {
            list.push_back({{"type", "image"}});
          } else {
            list.push_back({{"type", "text"}, {"text", part.text}});
          }
        }
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
