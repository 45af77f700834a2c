#include "media/image.h"

#include <fmt/format.h>

#include "core/error.h"

namespace epserve::media {

using namespace std::string_view_literals;

std::string sniff_image_format(std::string_view b) {
  if (b.starts_with("\x89PNG\r\n\x1a\n"sv)) return "png";
  if (b.starts_with("\xff\xd8\xff"sv)) return "jpeg";
  if (b.starts_with("GIF87a"sv) || b.starts_with("GIF89a"sv)) return "gif";
  if (b.starts_with("RIFF"sv) && b.size() >= 12 && b.substr(8, 4) == "WEBP"sv) return "webp";
  if (b.starts_with("BM"sv)) return "bmp";
  if (b.starts_with("II*\0"sv) || b.starts_with("MM\0*"sv)) return "tiff";
  if (b.starts_with("\0\0\1\0"sv)) return "ico";
  if (b.size() >= 12 && b.substr(4, 4) == "ftyp"sv) return "heif/avif";
  if (b.starts_with("\xff\x0a"sv) || b.starts_with("\0\0\0\x0cJXL "sv)) return "jpeg xl";
  return "";
}

namespace {

[[noreturn]] void refuse_format(std::string_view bytes, const std::string& format) {
  EPS_CHECK(!bytes.empty(), "the image is empty (0 bytes)");
  EPS_CHECK(!format.empty(),
            "cannot identify the image: its bytes are none of PNG, JPEG, WebP, GIF or BMP (the "
            "formats epserve decodes)");
  EPS_THROW("the image is {}; epserve decodes PNG, JPEG, WebP, GIF and BMP only", format);
}

}  // namespace

DecodedImage decode_image(std::string_view bytes, int64_t max_pixels) {
  std::string format = sniff_image_format(bytes);
  if (format == "png") return decode_png(bytes, max_pixels);
  if (format == "jpeg") return decode_jpeg(bytes, max_pixels);
  if (format == "webp") return decode_webp(bytes, max_pixels);
  if (format == "gif") return decode_gif(bytes, max_pixels);
  if (format == "bmp") return decode_bmp(bytes, max_pixels);
  refuse_format(bytes, format);
}

ImageSize probe_image_size(std::string_view bytes, int64_t max_pixels) {
  std::string format = sniff_image_format(bytes);
  if (format == "png") return probe_png_size(bytes, max_pixels);
  if (format == "jpeg") return probe_jpeg_size(bytes, max_pixels);
  if (format == "webp") return probe_webp_size(bytes, max_pixels);
  if (format == "gif") return probe_gif_size(bytes, max_pixels);
  if (format == "bmp") return probe_bmp_size(bytes, max_pixels);
  refuse_format(bytes, format);
}

void check_pixel_limit(int64_t width, int64_t height, int64_t max_pixels) {
  const int64_t pixels = width * height;
  EPS_CHECK(pixels <= max_pixels,
            "the image has {} pixels ({}x{}), more than the {} allowed (a decompression-bomb "
            "limit)",
            pixels, width, height, max_pixels);
}

void composite_on_white(const uint8_t* rgba, int64_t pixels, uint8_t* rgb) {
  // Libimaging's AlphaComposite with an opaque white destination: coefficients in 7 fractional
  // bits, then a rounded division by 255 done with shifts.
  constexpr uint32_t kPrecisionBits = 7;
  for (int64_t i = 0; i < pixels; ++i) {
    const uint8_t* s = rgba + 4 * i;
    uint8_t* d = rgb + 3 * i;
    uint32_t a = s[3];
    if (a == 0) {
      d[0] = d[1] = d[2] = 255;
      continue;
    }
    uint32_t coef1 = a * 255 * 255 * (1u << kPrecisionBits) / (255 * 255);
    uint32_t coef2 = 255 * (1u << kPrecisionBits) - coef1;
    for (int c = 0; c < 3; ++c) {
      uint32_t tmp = s[c] * coef1 + 255 * coef2 + (0x80u << kPrecisionBits);
      d[c] = static_cast<uint8_t>((((tmp >> 8) + tmp) >> 8) >> kPrecisionBits);
    }
  }
}

uint64_t image_content_hash(const DecodedImage& image) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  int64_t dims[2] = {image.width, image.height};
  mix(reinterpret_cast<const uint8_t*>(dims), sizeof(dims));
  mix(image.rgb.data(), image.rgb.size());
  return h;
}

}  // namespace epserve::media
