// JPEG through libjpeg-turbo with the settings PIL decodes with (libjpeg's defaults: the
// accurate integer DCT, fancy upsampling): YCbCr to RGB, grayscale replicated to RGB. CMYK and
// YCCK JPEGs are refused (PIL's naive CMYK->RGB conversion is not reproduced). A JPEG that ends
// early is refused, as PIL refuses it ("image file is truncated").
#include <cstdio>  // jpeglib.h needs FILE and size_t first

#include <jpeglib.h>
// jerror.h after jpeglib.h: the message codes (JWRN_JPEG_EOF).
#include <jerror.h>

#include <csetjmp>
#include <cstring>
#include <string>

#include "core/error.h"
#include "media/image.h"

namespace epserve::media {

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  std::string message;
  bool truncated = false;
};

void on_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  e->message = text;
  std::longjmp(e->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  // Level -1 is a warning; the memory source reports running out of data as JWRN_JPEG_EOF.
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
}

struct JpegDecompress {
  jpeg_decompress_struct cinfo;
  JpegDecompress() { std::memset(&cinfo, 0, sizeof(cinfo)); }
  ~JpegDecompress() { jpeg_destroy_decompress(&cinfo); }
};

}  // namespace

DecodedImage decode_jpeg(std::string_view bytes, int64_t max_pixels) {
  JpegDecompress d;
  JpegError err;
  d.cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_error_exit;
  err.mgr.emit_message = on_message;
  DecodedImage image;
  int64_t pixels = 0;
  bool too_large = false;
  bool cmyk = false;
  std::vector<uint8_t> row;
  if (setjmp(err.jump)) {
    EPS_THROW("the JPEG is corrupt: {}", err.message);
  }
  jpeg_create_decompress(&d.cinfo);
  jpeg_mem_src(&d.cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&d.cinfo, TRUE);
  pixels = static_cast<int64_t>(d.cinfo.image_width) * d.cinfo.image_height;
  cmyk = d.cinfo.jpeg_color_space == JCS_CMYK || d.cinfo.jpeg_color_space == JCS_YCCK;
  too_large = pixels > max_pixels;
  if (!cmyk && !too_large && !err.truncated) {
    bool gray = d.cinfo.num_components == 1;
    d.cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&d.cinfo);
    image.width = d.cinfo.output_width;
    image.height = d.cinfo.output_height;
    image.rgb.resize(static_cast<size_t>(image.width * image.height) * 3);
    row.resize(static_cast<size_t>(image.width) * d.cinfo.output_components);
    while (d.cinfo.output_scanline < d.cinfo.output_height) {
      uint8_t* out =
          image.rgb.data() + static_cast<size_t>(d.cinfo.output_scanline) * image.width * 3;
      JSAMPROW rows[1] = {gray ? row.data() : out};
      jpeg_read_scanlines(&d.cinfo, rows, 1);
      if (gray) {
        for (int64_t x = 0; x < image.width; ++x)
          out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
      }
    }
    if (!err.truncated) jpeg_finish_decompress(&d.cinfo);
  }
  EPS_CHECK(!cmyk, "the JPEG is CMYK or YCCK; epserve decodes RGB and grayscale JPEGs only");
  check_pixel_limit(d.cinfo.image_width, d.cinfo.image_height, max_pixels);
  EPS_CHECK(!err.truncated, "the JPEG is truncated");
  return image;
}

ImageSize probe_jpeg_size(std::string_view bytes, int64_t max_pixels) {
  JpegDecompress d;
  JpegError err;
  d.cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_error_exit;
  err.mgr.emit_message = on_message;
  ImageSize size;
  bool cmyk = false;
  if (setjmp(err.jump)) {
    EPS_THROW("the JPEG is corrupt: {}", err.message);
  }
  jpeg_create_decompress(&d.cinfo);
  jpeg_mem_src(&d.cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&d.cinfo, TRUE);
  size.width = d.cinfo.image_width;
  size.height = d.cinfo.image_height;
  cmyk = d.cinfo.jpeg_color_space == JCS_CMYK || d.cinfo.jpeg_color_space == JCS_YCCK;
  EPS_CHECK(!cmyk, "the JPEG is CMYK or YCCK; epserve decodes RGB and grayscale JPEGs only");
  check_pixel_limit(size.width, size.height, max_pixels);
  EPS_CHECK(!err.truncated, "the JPEG is truncated");
  return size;
}

}  // namespace epserve::media
