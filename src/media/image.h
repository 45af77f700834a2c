// Still images as the frontend receives them: the encoded bytes (PNG, JPEG, WebP, GIF, BMP) decoded
// to 8-bit RGB the way the Hugging Face image processors see a PIL image after `convert_to_rgb`
// (transparency composited onto white, grayscale and palettes expanded), with a content hash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace epserve::media {

// PIL raises DecompressionBombError above twice Image.MAX_IMAGE_PIXELS (2 * 89478485).
inline constexpr int64_t kMaxImagePixels = 2 * 89478485;

struct DecodedImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3], row-major
};

// "png", "jpeg", another known format's name ("gif", "webp", "bmp", "tiff", ...), or "" when the
// bytes start like no image format known here.
std::string sniff_image_format(std::string_view bytes);

// Decodes a PNG, JPEG, WebP, GIF or BMP (the first frame of an animation, as PIL's Image.open
// shows it); throws epserve::Error with a message fit for a client (unsupported or
// unknown format, corrupt or truncated data, more than max_pixels pixels, CMYK JPEG). The EXIF
// orientation is not applied, as neither HF's processor nor SGLang's load_image applies it.
DecodedImage decode_image(std::string_view bytes, int64_t max_pixels = kMaxImagePixels);

// Throws "the image has N pixels (WxH), more than the M allowed (a decompression-bomb limit)"
// when width x height > max_pixels.
void check_pixel_limit(int64_t width, int64_t height, int64_t max_pixels);

DecodedImage decode_png(std::string_view bytes, int64_t max_pixels);
DecodedImage decode_jpeg(std::string_view bytes, int64_t max_pixels);
DecodedImage decode_webp(std::string_view bytes, int64_t max_pixels);
DecodedImage decode_gif(std::string_view bytes, int64_t max_pixels);
DecodedImage decode_bmp(std::string_view bytes, int64_t max_pixels);

struct ImageSize {
  int64_t width = 0;
  int64_t height = 0;
};

// The size decode_image would give, read from the header alone (no pixel is decoded): what a PD
// decode server needs to count an image's tokens. Throws as decode_image does for an empty,
// unknown or unsupported image, a corrupt header, a CMYK JPEG or more than max_pixels pixels;
// damage past the header is left to the decoder (the prefill server's).
ImageSize probe_image_size(std::string_view bytes, int64_t max_pixels = kMaxImagePixels);
ImageSize probe_png_size(std::string_view bytes, int64_t max_pixels);
ImageSize probe_jpeg_size(std::string_view bytes, int64_t max_pixels);
ImageSize probe_webp_size(std::string_view bytes, int64_t max_pixels);
ImageSize probe_gif_size(std::string_view bytes, int64_t max_pixels);
ImageSize probe_bmp_size(std::string_view bytes, int64_t max_pixels);

// PIL's Image.alpha_composite of an RGBA image over opaque white, then RGB: what HF's
// convert_to_rgb does to any image with transparency. rgba: [pixels, 4] -> rgb [pixels, 3].
void composite_on_white(const uint8_t* rgba, int64_t pixels, uint8_t* rgb);

// FNV-1a over the width, height and RGB bytes: equal for equal decoded images, whatever their
// encoding. Keys the prefix cache.
uint64_t image_content_hash(const DecodedImage& image);

}  // namespace epserve::media
