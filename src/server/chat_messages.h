// The messages of a chat request as the chat template sees them, prepared as SGLang prepares
// them: a template that takes string content gets each list of text parts joined with one space;
// a template that iterates over message content (SGLang's "openai" content format) gets the
// parts as a list of {"type": "text", "text": ...} (tool messages still get a joined string).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve {

enum class ChatContentFormat { kString, kOpenai };

// SGLang's detection: "openai" when the template mentions image, audio, video or vision, or loops
// over message.content (or msg.content, m.content); "string" otherwise.
ChatContentFormat detect_chat_content_format(std::string_view template_source);

// Checks the request's messages (400 naming the message) and returns them for the template.
// Image parts ({"type": "image_url", "image_url": {"url": ...}}) of user messages become
// {"type": "image"} for the template, as SGLang passes them, and their URLs are appended to
// `image_urls` in order; with `image_urls` null (a model without vision) they are a 400.
nlohmann::ordered_json template_messages(const nlohmann::json& messages, ChatContentFormat format,
                                         std::vector<std::string>* image_urls = nullptr);

}  // namespace epserve
