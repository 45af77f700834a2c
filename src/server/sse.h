// Server-Sent Events framing for streaming responses: each event is "data: <json>\n\n" and
// OpenAI's streams end with "data: [DONE]\n\n".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace epserve {

inline constexpr const char* kSseContentType = "text/event-stream; charset=utf-8";

// One event carrying a JSON object (invalid UTF-8 in strings is replaced, never thrown).
std::string sse_event(const nlohmann::json& data);
std::string sse_done();

// Compact JSON text of a response body, replacing invalid UTF-8 instead of throwing.
std::string dump_json(const nlohmann::json& j);

}  // namespace epserve
