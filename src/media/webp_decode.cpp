// WebP through libwebp's animation decoder, which is how Pillow opens every WebP file: the
// canvas of the first frame in RGBA (for an animation, frame 0 as Image.open shows it), then
// transparency composited onto white as HF's convert_to_rgb does.
#include <webp/decode.h>
#include <webp/demux.h>

#include <cstring>
#include <memory>

#include "core/error.h"
#include "media/image.h"

namespace epserve::media {

namespace {

struct AnimDecoderDelete {
  void operator()(WebPAnimDecoder* d) const { WebPAnimDecoderDelete(d); }
};

// WebPGetFeatures reads the canvas size of an extended (VP8X) file, the frame size of a simple
// one: the animation decoder's canvas either way. Checked against the pixel limit.
WebPBitstreamFeatures read_features(std::string_view bytes, int64_t max_pixels) {
  WebPBitstreamFeatures features;
  VP8StatusCode status =
      WebPGetFeatures(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &features);
  EPS_CHECK(status != VP8_STATUS_NOT_ENOUGH_DATA, "the WebP is truncated");
  EPS_CHECK(status == VP8_STATUS_OK, "the WebP is corrupt: its header cannot be read");
  EPS_CHECK(features.width > 0 && features.height > 0, "the WebP is corrupt: its canvas is empty");
  check_pixel_limit(features.width, features.height, max_pixels);
  return features;
}

}  // namespace

DecodedImage decode_webp(std::string_view bytes, int64_t max_pixels) {
  read_features(bytes, max_pixels);

  WebPData data{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  WebPAnimDecoderOptions options;
  EPS_CHECK(WebPAnimDecoderOptionsInit(&options), "libwebp's animation decoder is unusable");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  std::unique_ptr<WebPAnimDecoder, AnimDecoderDelete> decoder(WebPAnimDecoderNew(&data, &options));
  EPS_CHECK(decoder, "the WebP is corrupt or truncated: its container cannot be parsed");
  WebPAnimInfo info;
  EPS_CHECK(WebPAnimDecoderGetInfo(decoder.get(), &info), "the WebP is corrupt");
  EPS_CHECK(info.canvas_width > 0 && info.canvas_height > 0,
            "the WebP is corrupt: its canvas is empty");
  check_pixel_limit(info.canvas_width, info.canvas_height, max_pixels);
  const int64_t pixels = static_cast<int64_t>(info.canvas_width) * info.canvas_height;
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  EPS_CHECK(WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp) && rgba,
            "the WebP is corrupt or truncated: its first frame cannot be decoded");
  DecodedImage image;
  image.width = info.canvas_width;
  image.height = info.canvas_height;
  image.rgb.resize(static_cast<size_t>(pixels) * 3);
  composite_on_white(rgba, pixels, image.rgb.data());
  return image;
}

ImageSize probe_webp_size(std::string_view bytes, int64_t max_pixels) {
  const WebPBitstreamFeatures features = read_features(bytes, max_pixels);
  return {features.width, features.height};
}

}  // namespace epserve::media
