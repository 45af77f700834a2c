#include "media/image_processor.h"

#include <cmath>
#include <fstream>

#include "core/error.h"

namespace epserve::media {

namespace {

int64_t positive_int(const nlohmann::json& j, const char* key, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  EPS_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0,
            "preprocessor_config.json: {} must be a positive integer, got {}", key, j[key].dump());
  return j[key].get<int64_t>();
}

std::array<float, 3> three_floats(const nlohmann::json& j, const char* key,
                                  std::array<float, 3> fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  if (v.is_number()) return {v.get<float>(), v.get<float>(), v.get<float>()};
  EPS_CHECK(v.is_array() && v.size() == 3,
            "preprocessor_config.json: {} must be 3 numbers (one per RGB channel), got {}", key,
            v.dump());
  return {v[0].get<float>(), v[1].get<float>(), v[2].get<float>()};
}

}  // namespace

ImageProcessorConfig parse_image_processor_config(const nlohmann::json& j) {
  EPS_CHECK(j.is_object(), "preprocessor_config.json must be an object");
  std::string type = j.value("image_processor_type", "Qwen2VLImageProcessor");
  EPS_CHECK(type == "Qwen2VLImageProcessor" || type == "Qwen2VLImageProcessorFast",
            "preprocessor_config.json: image_processor_type {} is not supported (epserve "
            "implements Qwen2VLImageProcessor, which Qwen2-VL to Qwen3-VL use)",
            type);
  ImageProcessorConfig c;
  c.patch_size = positive_int(j, "patch_size", c.patch_size);
  c.temporal_patch_size = positive_int(j, "temporal_patch_size", c.temporal_patch_size);
  c.merge_size = positive_int(j, "merge_size", c.merge_size);
  if (j.contains("size") && j["size"].is_object()) {
    const auto& size = j["size"];
    c.min_pixels =
        positive_int(size, "shortest_edge", positive_int(size, "min_pixels", c.min_pixels));
    c.max_pixels =
        positive_int(size, "longest_edge", positive_int(size, "max_pixels", c.max_pixels));
  }
  c.min_pixels = positive_int(j, "min_pixels", c.min_pixels);
  c.max_pixels = positive_int(j, "max_pixels", c.max_pixels);
  EPS_CHECK(c.min_pixels <= c.max_pixels,
            "preprocessor_config.json: min pixels {} above max pixels {}", c.min_pixels,
            c.max_pixels);
  c.do_resize = j.value("do_resize", true);
  c.do_rescale = j.value("do_rescale", true);
  c.do_normalize = j.value("do_normalize", true);
  EPS_CHECK(j.value("do_convert_rgb", true),
            "preprocessor_config.json: do_convert_rgb false is not supported");
  EPS_CHECK(!j.contains("resample") || j["resample"] == 3,
            "preprocessor_config.json: resample {} is not supported (only 3, bicubic)",
            j.contains("resample") ? j["resample"].dump() : "");
  if (j.contains("rescale_factor")) c.rescale_factor = j["rescale_factor"].get<double>();
  c.image_mean = three_floats(j, "image_mean", c.image_mean);
  c.image_std = three_floats(j, "image_std", c.image_std);
  return c;
}

std::optional<ImageProcessorConfig> load_image_processor_config(const std::filesystem::path& dir) {
  std::filesystem::path path = dir / "preprocessor_config.json";
  std::ifstream in(path);
  if (!in) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    EPS_THROW("{}: {}", path.string(), e.what());
  }
  return parse_image_processor_config(j);
}

std::array<int64_t, 2> smart_resize(int64_t height, int64_t width, int64_t factor,
                                    int64_t min_pixels, int64_t max_pixels) {
  EPS_CHECK(height > 0 && width > 0, "the image is empty ({}x{})", width, height);
  double ratio = static_cast<double>(std::max(height, width)) / std::min(height, width);
  EPS_CHECK(ratio <= 200, "absolute aspect ratio must be smaller than 200, got {}", ratio);
  // Python's round() rounds half to even, as nearbyint does in the default rounding mode.
  int64_t h_bar =
      static_cast<int64_t>(std::nearbyint(static_cast<double>(height) / factor)) * factor;
  int64_t w_bar =
      static_cast<int64_t>(std::nearbyint(static_cast<double>(width) / factor)) * factor;
  if (h_bar * w_bar > max_pixels) {
    double beta = std::sqrt(static_cast<double>(height * width) / max_pixels);
    h_bar = std::max(factor, static_cast<int64_t>(std::floor(height / beta / factor)) * factor);
    w_bar = std::max(factor, static_cast<int64_t>(std::floor(width / beta / factor)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    double beta = std::sqrt(static_cast<double>(min_pixels) / (height * width));
    h_bar = static_cast<int64_t>(std::ceil(height * beta / factor)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(width * beta / factor)) * factor;
  }
  return {h_bar, w_bar};
}

int64_t image_token_count(const ProcessedImage& image, const ImageProcessorConfig& config) {
  return image.num_patches() / (config.merge_size * config.merge_size);
}

ProcessedImage image_grid(int64_t height, int64_t width, const ImageProcessorConfig& c) {
  if (c.do_resize) {
    auto [h, w] =
        smart_resize(height, width, c.patch_size * c.merge_size, c.min_pixels, c.max_pixels);
    height = h;
    width = w;
  }
  const int64_t p = c.patch_size, m = c.merge_size;
  EPS_CHECK(height % (p * m) == 0 && width % (p * m) == 0,
            "the image ({}x{}) is not a multiple of patch_size * merge_size = {} (set do_resize)",
            width, height, p * m);
  ProcessedImage out;
  out.grid_t = 1;
  out.grid_h = height / p;
  out.grid_w = width / p;
  return out;
}

ProcessedImage process_image(const DecodedImage& image, const ImageProcessorConfig& c) {
  ProcessedImage out = image_grid(image.height, image.width, c);
  const int64_t p = c.patch_size, m = c.merge_size, t_patch = c.temporal_patch_size;
  const int64_t height = out.grid_h * p, width = out.grid_w * p;
  std::vector<uint8_t> resized;
  const std::vector<uint8_t>* pixels = &image.rgb;
  if (c.do_resize) {
    resized = resize_bicubic(image.rgb, image.height, image.width, height, width);
    pixels = &resized;
  }
  // Rescale and normalise fused as HF's torchvision backend does: (x - mean*255) / (std*255).
  float scale_inv = static_cast<float>(1.0 / c.rescale_factor);
  std::array<float, 3> mean{}, std{};
  for (int ch = 0; ch < 3; ++ch) {
    mean[ch] =
        c.do_normalize ? (c.do_rescale ? c.image_mean[ch] * scale_inv : c.image_mean[ch]) : 0;
    std[ch] = c.do_normalize ? (c.do_rescale ? c.image_std[ch] * scale_inv : c.image_std[ch]) : 1;
  }
  float plain_scale = (!c.do_normalize && c.do_rescale) ? static_cast<float>(c.rescale_factor) : 1;
  auto value = [&](int64_t y, int64_t x, int ch) {
    float v = (*pixels)[3 * (y * width + x) + ch];
    return c.do_normalize ? (v - mean[ch]) / std[ch] : v * plain_scale;
  };

  const int64_t dim = c.patch_dim();
  out.pixel_values.resize(out.num_patches() * dim);
  // Rows: (block row, block column, row in block, column in block); columns: (channel, frame,
  // y in patch, x in patch), the frame repeated temporal_patch_size times.
  float* row = out.pixel_values.data();
  for (int64_t bh = 0; bh < out.grid_h / m; ++bh) {
    for (int64_t bw = 0; bw < out.grid_w / m; ++bw) {
      for (int64_t mh = 0; mh < m; ++mh) {
        for (int64_t mw = 0; mw < m; ++mw, row += dim) {
          int64_t y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
          float* col = row;
          for (int ch = 0; ch < 3; ++ch) {
            for (int64_t f = 0; f < t_patch; ++f) {
              for (int64_t py = 0; py < p; ++py) {
                for (int64_t px = 0; px < p; ++px) *col++ = value(y0 + py, x0 + px, ch);
              }
            }
          }
        }
      }
    }
  }
  return out;
}

}  // namespace epserve::media
