// Where a request's image comes from, as OpenAI's image_url.url and SGLang's image_data give it:
// a data: URL (base64), a bare base64 string, or a local file (only under the directory the
// server allows with --allowed-local-media-path). http(s) URLs are refused: the server reaches
// no network.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace epserve::media {

struct ImageSourcePolicy {
  std::string allowed_local_media_path;  // empty: local files are refused
};

// The encoded image bytes. Throws epserve::Error with a message fit for a 400.
std::string read_image_source(std::string_view source, const ImageSourcePolicy& policy);

// Standard base64 (RFC 4648, '+' and '/'), padding optional, ASCII whitespace skipped;
// nullopt on any other character or a bad length.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace epserve::media
