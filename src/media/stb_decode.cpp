// BMP through stb_image (Debian's libstb), uncompressed 1/4/8/24/32-bit: the bytes PIL gives
// (the fixture test checks palette, gray, 1-bit, 24-bit, 32-bit with padding bytes set, and
// top-down BMPs). The headers are read here first (size, layout, length); what stb_image would
// decode differently from PIL is refused by name.
// Only the BMP path of stb_image is used (its GIF and TGA paths have open CVEs in Debian 12's
// package; GIF goes through giflib).
#include <stb_image.h>

#include <algorithm>
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

struct BmpHeader {
  int64_t width = 0;
  int64_t height = 0;  // rows, whichever way they run (a top-down BMP stores it negated)
  int bits = 0;
};

// The headers epserve reads itself: the size (for the pixel limit and the decode server's
// probe), and the layouts whose bytes stb_image gives as PIL does. Refused by name: RLE and
// bit-field compression and 16-bit pixels (PIL expands 5-bit samples as v * 255 / 31, stb by
// bit replication). A cut-off file is refused, as PIL refuses it ("image file is truncated"),
// where stb_image would read zeros past the end.
BmpHeader parse_bmp_header(std::string_view b) {
  EPS_CHECK(b.size() >= 26, "the BMP is truncated: {} bytes hold no header", b.size());
  const uint32_t pixel_offset = le(b, 10, 4);
  const uint32_t header_size = le(b, 14, 4);
  BmpHeader h;
  uint32_t compression = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER
    h.width = le(b, 18, 2);
    h.height = le(b, 20, 2);
    h.bits = static_cast<int>(le(b, 24, 2));
  } else {
    EPS_CHECK(header_size >= 40, "the BMP header is corrupt: a {}-byte info header", header_size);
    EPS_CHECK(b.size() >= 34, "the BMP is truncated: its header is cut short");
    h.width = static_cast<int32_t>(le(b, 18, 4));
    h.height = static_cast<int32_t>(le(b, 22, 4));
    h.bits = static_cast<int>(le(b, 28, 2));
    compression = le(b, 30, 4);
  }
  constexpr int64_t kMaxSide = int64_t{1} << 24;
  if (h.height < 0) h.height = -h.height;  // top-down rows
  EPS_CHECK(h.width > 0 && h.width <= kMaxSide && h.height > 0 && h.height <= kMaxSide,
            "the BMP header is corrupt: its size is {}x{}", h.width, h.height);
  EPS_CHECK(compression != 1 && compression != 2,
            "the BMP is RLE-compressed, which epserve does not decode; send PNG or JPEG");
  EPS_CHECK(compression == 0,
            "the BMP uses compression {} (bit fields or embedded JPEG/PNG), which epserve does not "
            "decode; send PNG or JPEG",
            compression);
  EPS_CHECK(h.bits == 1 || h.bits == 4 || h.bits == 8 || h.bits == 24 || h.bits == 32,
            "the BMP has {}-bit pixels; epserve decodes 1, 4, 8, 24 and 32-bit BMPs", h.bits);
  const int64_t row_bytes = (h.bits * h.width + 31) / 32 * 4;
  const int64_t needed = static_cast<int64_t>(pixel_offset) + row_bytes * h.height;
  EPS_CHECK(static_cast<int64_t>(b.size()) >= needed,
            "the BMP is truncated: {} bytes, its headers need {}", b.size(), needed);
  return h;
}

}  // namespace

DecodedImage decode_bmp(std::string_view bytes, int64_t max_pixels) {
  EPS_CHECK(bytes.size() <= static_cast<size_t>(INT_MAX), "the BMP is over 2 GiB");
  const BmpHeader h = parse_bmp_header(bytes);
  check_pixel_limit(h.width, h.height, max_pixels);
  // PIL opens an uncompressed 32-bit BMP as RGB ("BGRX": the fourth byte is padding); stb_image
  // would read it as alpha, so ask for three channels, which drops it.
  const int channels_out = h.bits == 32 ? 3 : 4;
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<unsigned char, StbFree> pixels(stbi_load_from_memory(
      reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()), &width,
      &height, &channels, channels_out));
  EPS_CHECK(pixels, "the BMP is corrupt: {}",
            stbi_failure_reason() ? stbi_failure_reason() : "it cannot be decoded");
  EPS_CHECK(width == h.width && height == h.height,
            "the BMP is corrupt: its header says {}x{}, its pixels are {}x{}", h.width, h.height,
            width, height);
  const int64_t count = h.width * h.height;
  DecodedImage image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(count) * 3);
  if (channels_out == 3) {
    std::copy_n(pixels.get(), image.rgb.size(), image.rgb.data());
  } else {
    composite_on_white(pixels.get(), count, image.rgb.data());
  }
  return image;
}

ImageSize probe_bmp_size(std::string_view bytes, int64_t max_pixels) {
  const BmpHeader h = parse_bmp_header(bytes);
  check_pixel_limit(h.width, h.height, max_pixels);
  return {h.width, h.height};
}

}  // namespace epserve::media
