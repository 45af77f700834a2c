// Server-Sent Events framing for streaming responses: each event is "data: <json>\n\n" and
// OpenAI's streams end with "data: [DONE]\n\n".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace epserve {

// Exactly this (no charset parameter): cpp-httplib compresses every other text/* type for clients
// that accept gzip, and the compressor holds data back, which would stall a stream. The events
// are UTF-8.
inline constexpr const char* kSseContentType = "text/event-stream";

// One event carrying a JSON object (invalid UTF-8 in strings is replaced, never thrown).
std::string sse_event(const nlohmann::json& data);
std::string sse_done();

// Compact JSON text of a response body, replacing invalid UTF-8 instead of throwing.
std::string dump_json(const nlohmann::json& j);

}  // namespace epserve
