// BMP through stb_image (Debian's libstb): 8-bit RGBA, then any transparency composited onto
// white as HF's convert_to_rgb does after PIL opens the file. BMP is lossless, so any correct
// decoder gives PIL's bytes; the fixture test checks palette, grayscale, 1-bit and 24-bit BMPs.
// Only the BMP path of stb_image is used (its GIF and TGA paths have open CVEs in Debian 12's
// package; GIF goes through giflib).
#include <stb_image.h>

#include <climits>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "media/image.h"

namespace epserve::media {

namespace {

struct StbFree {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

uint32_t le(std::string_view b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

// stb_image reads zeros past the end of a BMP; PIL refuses such a file ("image file is
// truncated"). The bytes an uncompressed BMP needs follow from its headers.
void check_bmp_length(std::string_view b) {
  EPS_CHECK(b.size() >= 26, "the BMP is truncated: {} bytes hold no header", b.size());
  const uint32_t pixel_offset = le(b, 10, 4);
  const uint32_t header_size = le(b, 14, 4);
  int64_t width = 0, height = 0, bits = 0, compression = 0;
  if (header_size == 12) {
    width = le(b, 18, 2);
    height = le(b, 20, 2);
    bits = le(b, 24, 2);
  } else {
    EPS_CHECK(b.size() >= 34, "the BMP is truncated: its header is cut short");
    width = static_cast<int32_t>(le(b, 18, 4));
    height = static_cast<int32_t>(le(b, 22, 4));
    bits = le(b, 28, 2);
    compression = le(b, 30, 4);
  }
  if (compression != 0 && compression != 3 && compression != 6) return;  // RLE and others
  if (height < 0) height = -height;
  const int64_t row_bytes = (bits * width + 31) / 32 * 4;
  const int64_t needed = pixel_offset + row_bytes * height;
  EPS_CHECK(width > 0 && static_cast<int64_t>(b.size()) >= needed,
            "the BMP is truncated: {} bytes, its headers need {}", b.size(), needed);
}

}  // namespace

DecodedImage decode_bmp(std::string_view bytes, int64_t max_pixels) {
  const std::string format = "BMP";
  EPS_CHECK(bytes.size() <= static_cast<size_t>(INT_MAX), "the {} is over 2 GiB", format);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int size = static_cast<int>(bytes.size());
  int width = 0, height = 0, channels = 0;
  EPS_CHECK(stbi_info_from_memory(data, size, &width, &height, &channels),
            "the {} is corrupt or truncated: its header cannot be read ({})", format,
            stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  const int64_t pixels = static_cast<int64_t>(width) * height;
  EPS_CHECK(pixels <= max_pixels,
            "the image has {} pixels ({}x{}), more than the {} allowed (a decompression-bomb "
            "limit)",
            pixels, width, height, max_pixels);
  check_bmp_length(bytes);
  std::unique_ptr<unsigned char, StbFree> rgba(
      stbi_load_from_memory(data, size, &width, &height, &channels, 4));
  EPS_CHECK(rgba, "the {} is corrupt or truncated: {}", format,
            stbi_failure_reason() ? stbi_failure_reason() : "it cannot be decoded");
  DecodedImage image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  composite_on_white(rgba.get(), static_cast<int64_t>(width) * height, image.rgb.data());
  return image;
}

ImageSize probe_bmp_size(std::string_view bytes, int64_t max_pixels) {
  EPS_CHECK(bytes.size() <= static_cast<size_t>(INT_MAX), "the BMP is over 2 GiB");
  int width = 0, height = 0, channels = 0;
  EPS_CHECK(stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                  static_cast<int>(bytes.size()), &width, &height, &channels),
            "the BMP is corrupt or truncated: its header cannot be read ({})",
            stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  const int64_t pixels = static_cast<int64_t>(width) * height;
  EPS_CHECK(pixels <= max_pixels,
            "the image has {} pixels ({}x{}), more than the {} allowed (a decompression-bomb "
            "limit)",
            pixels, width, height, max_pixels);
  return {width, height};
}

}  // namespace epserve::media
