// The image processor of preprocessor_config.json for Qwen2-VL / Qwen3-VL
// (transformers' Qwen2VLImageProcessor, the torchvision backend that AutoImageProcessor picks):
// smart resize to multiples of patch * merge within [min_pixels, max_pixels], bicubic resize with
// antialiasing (torch's uint8 kernel, PIL's scheme), rescale and normalise,
// the frame repeated temporal_patch_size times, patches in HF's row order.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "media/image.h"

namespace epserve::media {

struct ImageProcessorConfig {
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;
  int64_t min_pixels = 56 * 56;         // size.shortest_edge, or min_pixels
  int64_t max_pixels = 28 * 28 * 1280;  // size.longest_edge, or max_pixels
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  double rescale_factor = 1.0 / 255;
  std::array<float, 3> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};  // OpenAI CLIP
  std::array<float, 3> image_std = {0.26862954f, 0.26130258f, 0.27577711f};

  int64_t patch_dim() const { return 3 * temporal_patch_size * patch_size * patch_size; }
};

// Reads a preprocessor_config.json object; Qwen2VLImageProcessor's defaults for absent keys.
// Throws epserve::Error for what is not supported (another resample than bicubic, a processor
// type other than Qwen2-VL's).
ImageProcessorConfig parse_image_processor_config(const nlohmann::json& j);
// <dir>/preprocessor_config.json, or nullopt when the directory has none.
std::optional<ImageProcessorConfig> load_image_processor_config(const std::filesystem::path& dir);

struct ProcessedImage {
  int64_t grid_t = 1;
  int64_t grid_h = 0;
  int64_t grid_w = 0;
  std::vector<float> pixel_values;  // [grid_t * grid_h * grid_w, patch_dim]
  int64_t num_patches() const { return grid_t * grid_h * grid_w; }
};

// transformers' smart_resize: {height, width}. Throws for an aspect ratio above 200.
std::array<int64_t, 2> smart_resize(int64_t height, int64_t width, int64_t factor,
                                    int64_t min_pixels, int64_t max_pixels);

// Tokens the image takes in the prompt: grid_t * grid_h * grid_w / merge^2.
int64_t image_token_count(const ProcessedImage& image, const ImageProcessorConfig& config);

// torchvision's resize of a uint8 RGB image ([H, W, 3]) with InterpolationMode.BICUBIC and
// antialias=True on the CPU: torch's uint8 separable path, which is PIL's bicubic resampling
// (a = -0.5, int16 weights, uint8 between the width and the height pass).
std::vector<uint8_t> resize_bicubic(const std::vector<uint8_t>& rgb, int64_t height, int64_t width,
                                    int64_t new_height, int64_t new_width);

ProcessedImage process_image(const DecodedImage& image, const ImageProcessorConfig& config);

// The grid process_image gives an image of this size, without its pixel values (a PD decode
// server counts an image's tokens with it).
ProcessedImage image_grid(int64_t height, int64_t width, const ImageProcessorConfig& config);

}  // namespace epserve::media
