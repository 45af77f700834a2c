// GIF through giflib, first frame only (what PIL's Image.open shows), read record by record so
// that a file with many frames costs no more than its first. As PIL does for frame 0, the canvas
// is the logical screen (grown to cover the frame) filled with the frame's transparent index
// (else index 0), the frame is drawn at its offset, and palette indices become RGBA (the
// transparent index gets alpha 0); convert_to_rgb's composite onto white follows. A file without
// colour maps is grayscale.
#include <gif_lib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "media/image.h"

namespace epserve::media {

namespace {

struct GifReader {
  std::string_view bytes;
  size_t offset = 0;
  bool short_read = false;
};

int read_bytes(GifFileType* gif, GifByteType* out, int n) {
  auto* r = static_cast<GifReader*>(gif->UserData);
  size_t take = std::min(static_cast<size_t>(n), r->bytes.size() - r->offset);
  if (take < static_cast<size_t>(n)) r->short_read = true;
  std::memcpy(out, r->bytes.data() + r->offset, take);
  r->offset += take;
  return static_cast<int>(take);
}

struct GifClose {
  void operator()(GifFileType* g) const {
    int error = 0;
    DGifCloseFile(g, &error);
  }
};

[[noreturn]] void fail(const GifReader& r, int error) {
  if (r.short_read)
    EPS_THROW("the GIF is truncated: its first frame ends after byte {}", r.bytes.size());
  const char* why = GifErrorString(error);
  EPS_THROW("the GIF is corrupt: {}", why ? why : "giflib cannot read it");
}

// Reads up to the first image descriptor (gif->Image afterwards). The canvas is the logical
// screen grown to cover the frame, as Pillow's GifImagePlugin sizes it (so a 0x0 screen takes
// the frame's size).
struct FirstFrame {
  int transparent = NO_TRANSPARENT_COLOR;
  int64_t width = 0, height = 0;  // the canvas
};

FirstFrame read_to_first_frame(GifFileType* gif, const GifReader& reader, int64_t max_pixels) {
  FirstFrame f;
  for (;;) {
    GifRecordType type;
    if (DGifGetRecordType(gif, &type) == GIF_ERROR) fail(reader, gif->Error);
    if (type == TERMINATE_RECORD_TYPE) EPS_THROW("the GIF is corrupt: it holds no image");
    if (type == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* ext = nullptr;
      if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) fail(reader, gif->Error);
      if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) {
        GraphicsControlBlock gcb;
        if (DGifExtensionToGCB(ext[0], ext + 1, &gcb) == GIF_OK)
          f.transparent = gcb.TransparentColor;
      }
      while (ext) {
        if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) fail(reader, gif->Error);
      }
      continue;
    }
    if (type != IMAGE_DESC_RECORD_TYPE) continue;
    if (DGifGetImageDesc(gif) == GIF_ERROR) fail(reader, gif->Error);
    break;
  }
  const GifImageDesc& d = gif->Image;
  EPS_CHECK(d.Width > 0 && d.Height > 0 && d.Left >= 0 && d.Top >= 0,
            "the GIF is corrupt: its first frame is {}x{} at ({}, {})", d.Width, d.Height, d.Left,
            d.Top);
  f.width = std::max<int64_t>(gif->SWidth, int64_t{d.Left} + d.Width);
  f.height = std::max<int64_t>(gif->SHeight, int64_t{d.Top} + d.Height);
  check_pixel_limit(f.width, f.height, max_pixels);
  return f;
}

}  // namespace

DecodedImage decode_gif(std::string_view bytes, int64_t max_pixels) {
  GifReader reader{bytes};
  int error = 0;
  std::unique_ptr<GifFileType, GifClose> gif(DGifOpen(&reader, read_bytes, &error));
  if (!gif) fail(reader, error);
  const FirstFrame first = read_to_first_frame(gif.get(), reader, max_pixels);
  const int64_t width = first.width, height = first.height, pixels = width * height;
  const int transparent = first.transparent;

  const GifImageDesc& desc = gif->Image;
  const int64_t fw = desc.Width, fh = desc.Height;
  std::vector<uint8_t> frame(static_cast<size_t>(fw * fh));
  auto read_row = [&](int64_t y) {
    if (DGifGetLine(gif.get(), frame.data() + y * fw, static_cast<int>(fw)) == GIF_ERROR) {
      fail(reader, gif->Error);
    }
  };
  if (desc.Interlace) {
    constexpr int kStart[4] = {0, 4, 2, 1}, kStep[4] = {8, 8, 4, 2};
    for (int pass = 0; pass < 4; ++pass) {
      for (int64_t y = kStart[pass]; y < fh; y += kStep[pass]) read_row(y);
    }
  } else {
    for (int64_t y = 0; y < fh; ++y) read_row(y);
  }

  std::vector<uint8_t> canvas(static_cast<size_t>(pixels),
                              static_cast<uint8_t>(transparent >= 0 ? transparent : 0));
  for (int64_t y = 0; y < fh; ++y) {
    const int64_t cy = desc.Top + y;
    if (cy < 0 || cy >= height) continue;
    for (int64_t x = 0; x < fw; ++x) {
      const int64_t cx = desc.Left + x;
      if (cx >= 0 && cx < width) canvas[cy * width + cx] = frame[y * fw + x];
    }
  }
  const ColorMapObject* map = desc.ColorMap ? desc.ColorMap : gif->SColorMap;
  std::vector<uint8_t> rgba(static_cast<size_t>(pixels) * 4);
  for (int64_t i = 0; i < pixels; ++i) {
    const int index = canvas[i];
    uint8_t* d = rgba.data() + 4 * i;
    if (!map) {
      d[0] = d[1] = d[2] = static_cast<uint8_t>(index);
    } else if (index < map->ColorCount) {
      d[0] = map->Colors[index].Red;
      d[1] = map->Colors[index].Green;
      d[2] = map->Colors[index].Blue;
    } else {
      d[0] = d[1] = d[2] = 0;
    }
    d[3] = index == transparent ? 0 : 255;
  }
  DecodedImage image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(pixels) * 3);
  composite_on_white(rgba.data(), pixels, image.rgb.data());
  return image;
}

ImageSize probe_gif_size(std::string_view bytes, int64_t max_pixels) {
  GifReader reader{bytes};
  int error = 0;
  std::unique_ptr<GifFileType, GifClose> gif(DGifOpen(&reader, read_bytes, &error));
  if (!gif) fail(reader, error);
  const FirstFrame first = read_to_first_frame(gif.get(), reader, max_pixels);
  return {first.width, first.height};
}

}  // namespace epserve::media
