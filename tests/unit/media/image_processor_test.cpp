// The media module against transformers: tests/data/images/processor_cases.* hold, per image,
// what HF's Qwen2VLImageProcessor (torchvision backend, as Qwen3-VL's processor config selects)
// returned (tools/reference/make_image_fixture.py). Decoding (libpng, libjpeg-turbo) and the
// resize are expected to give the same bytes as PIL + torchvision, so the pixel values match
// exactly (tolerance 0; the CLIP mean/std case within 1e-6).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "media/image.h"
#include "media/image_processor.h"
#include "support/decode_error.h"
#include "support/read_file.h"

namespace epserve::media {
namespace {

using testing::decode_error;
using testing::probe_error;
using testing::read_file;

std::string images_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/images/";
}

nlohmann::json cases() {
  return nlohmann::json::parse(read_file(images_dir() + "processor_cases.json"));
}

// HF's pixel values of one case, as float32.
std::vector<float> reference_values(const SafetensorsFile& file, const nlohmann::json& c) {
  std::vector<float> out;
  if (c.contains("codes")) {
    Tensor t = file.get(c["codes"].get<std::string>());
    const auto* codes = static_cast<const uint8_t*>(t.data());
    for (int64_t i = 0; i < t.numel(); ++i) out.push_back((codes[i] - 127.5f) / 127.5f);
  } else {
    Tensor t = file.get(c["pixel_values"].get<std::string>());
    const auto* v = static_cast<const float*>(t.data());
    out.assign(v, v + t.numel());
  }
  return out;
}

TEST(ImageProcessor, MatchesTransformersOnEveryCase) {
  auto file = SafetensorsFile::open(images_dir() + "processor_cases.safetensors");
  nlohmann::json all = cases();
  ASSERT_GE(all.size(), 10u);
  for (const auto& c : all) {
    SCOPED_TRACE(c["name"].get<std::string>());
    DecodedImage image = decode_image(read_file(images_dir() + c["image"].get<std::string>()));
    ImageProcessorConfig config = parse_image_processor_config(c["config"]);
    ProcessedImage out = process_image(image, config);
    EXPECT_EQ(out.grid_t, c["grid_thw"][0].get<int64_t>());
    EXPECT_EQ(out.grid_h, c["grid_thw"][1].get<int64_t>());
    EXPECT_EQ(out.grid_w, c["grid_thw"][2].get<int64_t>());
    std::vector<float> expected = reference_values(*file, c);
    ASSERT_EQ(out.pixel_values.size(), expected.size());
    EXPECT_EQ(static_cast<int64_t>(expected.size()),
              c["shape"][0].get<int64_t>() * c["shape"][1].get<int64_t>());
    double tolerance = c.contains("codes") ? 0.0 : 1e-6;
    int64_t mismatches = 0;
    double max_diff = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      double d = std::abs(static_cast<double>(out.pixel_values[i]) - expected[i]);
      max_diff = std::max(max_diff, d);
      mismatches += d > tolerance;
    }
    EXPECT_EQ(mismatches, 0) << "max |diff| " << max_diff << " over " << expected.size();
  }
}

TEST(ImageProcessor, SmartResizeAsTransformers) {
  // Values from transformers' smart_resize (factor 32, min 4096, max 65536).
  EXPECT_EQ(smart_resize(20, 30, 32, 4096, 65536), (std::array<int64_t, 2>{64, 96}));
  EXPECT_EQ(smart_resize(300, 260, 32, 4096, 65536), (std::array<int64_t, 2>{256, 224}));
  // Python's round() is half to even: 80 / 32 = 2.5 -> 2, 112 / 32 = 3.5 -> 4.
  EXPECT_EQ(smart_resize(80, 112, 32, 1, 1 << 30), (std::array<int64_t, 2>{64, 128}));
  EXPECT_THROW(smart_resize(1, 201, 32, 4096, 65536), Error);
}

TEST(ImageProcessor, ConfigKeysAndRefusals) {
  auto c = parse_image_processor_config(
      {{"size", {{"shortest_edge", 100}, {"longest_edge", 1000}}}, {"max_pixels", 2000}});
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 2000);  // the top-level key overrides size, as in HF's __init__
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_FLOAT_EQ(c.image_mean[0], 0.48145466f);
  EXPECT_THROW(parse_image_processor_config({{"resample", 2}}), Error);
  EXPECT_THROW(parse_image_processor_config({{"image_processor_type", "CLIPImageProcessor"}}),
               Error);
  auto tiny = load_image_processor_config(std::string(EPSERVE_SOURCE_DIR) +
                                          "/tests/data/models/qwen3_vl_moe_tiny");
  ASSERT_TRUE(tiny);
  EXPECT_EQ(tiny->patch_size, 16);
  EXPECT_EQ(tiny->min_pixels, 4096);
  EXPECT_FALSE(load_image_processor_config(images_dir()));
}

TEST(ImageDecode, BadInputIsAClearError) {
  std::string png = read_file(images_dir() + "rgb_37x53.png");
  std::string jpg = read_file(images_dir() + "rgb_40x31.jpg");
  EXPECT_NE(decode_error(png.substr(0, png.size() / 2)).find("PNG is truncated"),
            std::string::npos);
  EXPECT_NE(decode_error(png.substr(0, 40)).find("PNG is"), std::string::npos);
  EXPECT_NE(decode_error(jpg.substr(0, jpg.size() / 2)).find("JPEG is truncated"),
            std::string::npos);
  std::string corrupt = png;
  for (size_t i = 60; i < 90; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  EXPECT_NE(decode_error(corrupt).find("PNG is corrupt"), std::string::npos)
      << decode_error(corrupt);
  std::string corrupt_jpg = jpg.substr(0, 3) + std::string(40, '\x13') + jpg.substr(43);
  EXPECT_NE(decode_error(corrupt_jpg).find("JPEG is corrupt"), std::string::npos)
      << decode_error(corrupt_jpg);
  EXPECT_NE(decode_error(read_file(images_dir() + "refused.tiff")).find("the image is tiff"),
            std::string::npos);
  EXPECT_NE(decode_error(read_file(images_dir() + "refused_cmyk.jpg")).find("CMYK"),
            std::string::npos);
  EXPECT_NE(decode_error("hello, not an image").find("cannot identify the image"),
            std::string::npos);
  EXPECT_NE(decode_error("").find("empty"), std::string::npos);
  // 53 x 37 = 1961 pixels: over a limit of 1000 (the decompression-bomb check reads the header).
  EXPECT_NE(decode_error(png, 1000).find("more than the 1000 allowed"), std::string::npos);
  EXPECT_NE(decode_error(jpg, 1000).find("more than the 1000 allowed"), std::string::npos);
  EXPECT_EQ(decode_error(png, 1961), "");
}

// What a PD decode server reads: the size from the header alone gives the grid that decoding and
// processing the whole image gives, for every case of every format and config.
TEST(ImageProbe, HeaderSizeGivesTheProcessorsGrid) {
  nlohmann::json all = cases();
  for (const auto& c : all) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string bytes = read_file(images_dir() + c["image"].get<std::string>());
    DecodedImage image = decode_image(bytes);
    ImageSize size = probe_image_size(bytes);
    EXPECT_EQ(size.width, image.width);
    EXPECT_EQ(size.height, image.height);
    ImageProcessorConfig config = parse_image_processor_config(c["config"]);
    ProcessedImage grid = image_grid(size.height, size.width, config);
    EXPECT_EQ(grid.grid_t, c["grid_thw"][0].get<int64_t>());
    EXPECT_EQ(grid.grid_h, c["grid_thw"][1].get<int64_t>());
    EXPECT_EQ(grid.grid_w, c["grid_thw"][2].get<int64_t>());
    EXPECT_TRUE(grid.pixel_values.empty());
  }
}

TEST(ImageProbe, RefusesWhatTheHeaderShows) {
  std::string png = read_file(images_dir() + "rgb_37x53.png");
  std::string jpg = read_file(images_dir() + "rgb_40x31.jpg");
  EXPECT_NE(probe_error(read_file(images_dir() + "refused.tiff")).find("the image is tiff"),
            std::string::npos);
  EXPECT_NE(probe_error(read_file(images_dir() + "refused_cmyk.jpg")).find("CMYK"),
            std::string::npos);
  EXPECT_NE(probe_error("hello, not an image").find("cannot identify the image"),
            std::string::npos);
  EXPECT_NE(probe_error("").find("empty"), std::string::npos);
  EXPECT_NE(probe_error(png.substr(0, 20)).find("PNG is truncated"), std::string::npos);
  EXPECT_NE(probe_error(jpg.substr(0, 10)).find("JPEG"), std::string::npos);
  EXPECT_NE(probe_error(png, 1000).find("more than the 1000 allowed"), std::string::npos);
  EXPECT_NE(probe_error(jpg, 1000).find("more than the 1000 allowed"), std::string::npos);
  // Damage past the header is the decoder's to find (a prefill server's).
  EXPECT_EQ(probe_error(png.substr(0, png.size() / 2)), "");
}

TEST(ImageDecode, ContentHashFollowsThePixels) {
  DecodedImage a = decode_image(read_file(images_dir() + "rgb_37x53.png"));
  DecodedImage b = a;
  EXPECT_EQ(image_content_hash(a), image_content_hash(b));
  b.rgb[100] ^= 1;
  EXPECT_NE(image_content_hash(a), image_content_hash(b));
  DecodedImage c = a;
  std::swap(c.width, c.height);
  EXPECT_NE(image_content_hash(a), image_content_hash(c));
}

TEST(ImageDecode, CompositeOnWhiteAsPil) {
  // PIL: Image.alpha_composite(white, RGBA(r, g, b, a)).convert("RGB").
  const uint8_t rgba[] = {0, 0, 0, 0, 10, 200, 255, 255, 100, 50, 0, 128, 0, 0, 0, 1};
  uint8_t rgb[12];
  composite_on_white(rgba, 4, rgb);
  const uint8_t expected[] = {255, 255, 255, 10, 200, 255, 177, 152, 127, 254, 254, 254};
  for (int i = 0; i < 12; ++i) EXPECT_EQ(rgb[i], expected[i]) << i;
}

}  // namespace
}  // namespace epserve::media
