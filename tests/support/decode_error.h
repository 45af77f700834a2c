// What decode_image (and the header probe, probe_image_size) says about some bytes: its error
// message, or "" when they decode (or are sized).
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"
#include "media/image.h"

namespace epserve::testing {

inline std::string decode_error(const std::string& bytes,
                                int64_t max_pixels = media::kMaxImagePixels) {
  try {
    media::decode_image(bytes, max_pixels);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline std::string probe_error(const std::string& bytes,
                               int64_t max_pixels = media::kMaxImagePixels) {
  try {
    media::probe_image_size(bytes, max_pixels);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace epserve::testing
