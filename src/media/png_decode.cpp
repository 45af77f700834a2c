// PNG through libpng, with the conversions PIL makes when it opens a PNG and HF's convert_to_rgb
// then makes: palettes and low bit depths expanded, 16-bit samples cut to their high byte
// (PIL's "RGB;16B" unpackers) except 16-bit grayscale, which PIL opens as mode I;16 and
// clips to 255 on conversion to RGB; a tRNS chunk or an alpha channel composited onto white.
// No gamma or colour-profile correction, as PIL applies none.
#include <png.h>

#include <csetjmp>
#include <cstring>
#include <string>

#include "core/error.h"
#include "media/image.h"

namespace epserve::media {

namespace {

struct PngReader {
  std::string_view bytes;
  size_t offset = 0;
  std::string error;
};

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->offset + n > r->bytes.size()) {
    r->error = "the PNG is truncated";
    png_longjmp(png, 1);
  }
  std::memcpy(out, r->bytes.data() + r->offset, n);
  r->offset += n;
}

void on_error(png_structp png, png_const_charp message) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  if (r->error.empty()) r->error = std::string("the PNG is corrupt: ") + message;
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

struct PngHandles {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngHandles() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

}  // namespace

DecodedImage decode_png(std::string_view bytes, int64_t max_pixels) {
  PngReader reader;
  reader.bytes = bytes;
  PngHandles h;
  h.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_error, on_warning);
  EPS_CHECK(h.png, "out of memory reading a PNG");
  h.info = png_create_info_struct(h.png);
  EPS_CHECK(h.info, "out of memory reading a PNG");
  // Objects with destructors live outside the setjmp scope; only PODs and the result change in it.
  DecodedImage image;
  std::vector<uint8_t> rows;
  std::vector<png_bytep> row_pointers;
  int64_t pixels = 0;
  bool too_large = false;
  if (setjmp(png_jmpbuf(h.png))) {
    EPS_THROW("{}", reader.error.empty() ? "the PNG is corrupt" : reader.error);
  }
  png_set_read_fn(h.png, &reader, read_bytes);
  png_set_user_limits(h.png, 0x7fffffff, 0x7fffffff);
  png_read_info(h.png, h.info);
  png_uint_32 width = png_get_image_width(h.png, h.info);
  png_uint_32 height = png_get_image_height(h.png, h.info);
  pixels = static_cast<int64_t>(width) * height;
  if (pixels > max_pixels) {
    too_large = true;
  } else {
    int color = png_get_color_type(h.png, h.info);
    int depth = png_get_bit_depth(h.png, h.info);
    bool has_trns = png_get_valid(h.png, h.info, PNG_INFO_tRNS) != 0;
    bool gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY && !has_trns;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(h.png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(h.png);
    if (has_trns) png_set_tRNS_to_alpha(h.png);
    if (depth == 16 && !gray16) png_set_strip_16(h.png);
    if (gray16) png_set_swap(h.png);  // native-endian 16-bit samples
    png_set_interlace_handling(h.png);
    png_read_update_info(h.png, h.info);
    size_t row_bytes = png_get_rowbytes(h.png, h.info);
    int channels = png_get_channels(h.png, h.info);
    rows.resize(row_bytes * height);
    row_pointers.resize(height);
    for (png_uint_32 y = 0; y < height; ++y) row_pointers[y] = rows.data() + y * row_bytes;
    png_read_image(h.png, row_pointers.data());
    png_read_end(h.png, nullptr);

    image.width = width;
    image.height = height;
    image.rgb.resize(static_cast<size_t>(pixels) * 3);
    uint8_t* out = image.rgb.data();
    if (gray16) {
      const auto* in = reinterpret_cast<const uint16_t*>(rows.data());
      for (int64_t i = 0; i < pixels; ++i) {
        uint8_t v = in[i] > 255 ? 255 : static_cast<uint8_t>(in[i]);
        out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = v;
      }
    } else if (channels == 1) {
      for (int64_t i = 0; i < pixels; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = rows[i];
    } else if (channels == 3) {
      std::memcpy(out, rows.data(), image.rgb.size());
    } else {
      std::vector<uint8_t> rgba(static_cast<size_t>(pixels) * 4);
      for (int64_t i = 0; i < pixels; ++i) {
        const uint8_t* s = rows.data() + i * channels;
        uint8_t* d = rgba.data() + 4 * i;
        if (channels == 2) {
          d[0] = d[1] = d[2] = s[0];
          d[3] = s[1];
        } else {
          std::memcpy(d, s, 4);
        }
      }
      composite_on_white(rgba.data(), pixels, out);
    }
  }
  check_pixel_limit(png_get_image_width(h.png, h.info), png_get_image_height(h.png, h.info),
                    max_pixels);
  return image;
}

ImageSize probe_png_size(std::string_view bytes, int64_t max_pixels) {
  PngReader reader;
  reader.bytes = bytes;
  PngHandles h;
  h.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_error, on_warning);
  EPS_CHECK(h.png, "out of memory reading a PNG");
  h.info = png_create_info_struct(h.png);
  EPS_CHECK(h.info, "out of memory reading a PNG");
  ImageSize size;
  if (setjmp(png_jmpbuf(h.png))) {
    EPS_THROW("{}", reader.error.empty() ? "the PNG is corrupt" : reader.error);
  }
  png_set_read_fn(h.png, &reader, read_bytes);
  png_set_user_limits(h.png, 0x7fffffff, 0x7fffffff);
  png_read_info(h.png, h.info);
  size.width = png_get_image_width(h.png, h.info);
  size.height = png_get_image_height(h.png, h.info);
  check_pixel_limit(size.width, size.height, max_pixels);
  return size;
}

}  // namespace epserve::media
