// WebP (libwebp), GIF (giflib) and BMP (stb_image) against PIL: tests/data/images/formats/ holds
// images PIL wrote and, in formats_rgb.safetensors, the RGB bytes PIL's decoding of each becomes
// after transformers' convert_to_rgb (tools/reference/make_image_formats.py). Tolerance 0.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "media/image.h"
#include "support/decode_error.h"
#include "support/read_file.h"

namespace epserve::media {
namespace {

using testing::decode_error;
using testing::probe_error;
using testing::read_file;

std::string formats_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/images/formats/";
}

TEST(ImageFormats, WebpGifAndBmpDecodeToPilsBytes) {
  auto file = SafetensorsFile::open(formats_dir() + "formats_rgb.safetensors");
  int checked = 0;
  for (const auto& [name, info] : file->header().tensors) {
    SCOPED_TRACE(name);
    Tensor expected = file->get(name);
    DecodedImage image = decode_image(read_file(formats_dir() + name));
    ASSERT_EQ(image.height, expected.dim(0));
    ASSERT_EQ(image.width, expected.dim(1));
    ASSERT_EQ(static_cast<int64_t>(image.rgb.size()), expected.numel());
    const auto* want = static_cast<const uint8_t*>(expected.data());
    int64_t mismatches = 0, first = -1;
    for (size_t i = 0; i < image.rgb.size(); ++i) {
      if (image.rgb[i] != want[i]) {
        if (first < 0) first = static_cast<int64_t>(i);
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << "first at byte " << first << ": " << int(image.rgb[first])
                             << " vs PIL's " << int(want[first]);
    ++checked;
  }
  EXPECT_EQ(checked, 19);
}

// A PD decode server's header probe gives the size the decoder does, animations and GIF frames
// offset on a larger screen included.
TEST(ImageFormats, HeaderProbeGivesTheDecodedSize) {
  auto file = SafetensorsFile::open(formats_dir() + "formats_rgb.safetensors");
  for (const auto& [name, info] : file->header().tensors) {
    SCOPED_TRACE(name);
    const std::string bytes = read_file(formats_dir() + name);
    DecodedImage image = decode_image(bytes);
    ImageSize size = probe_image_size(bytes);
    EXPECT_EQ(size.width, image.width);
    EXPECT_EQ(size.height, image.height);
    EXPECT_THROW(probe_image_size(bytes, image.width * image.height - 1), Error);
  }
}

TEST(ImageFormats, BadInputIsAClearError) {
  for (const char* name : {"lossy_rgb_29x23.webp", "lossless_rgba_21x17.webp",
                           "palette_trns_20x24.gif", "rgb24_27x21.bmp"}) {
    SCOPED_TRACE(name);
    std::string bytes = read_file(formats_dir() + name);
    std::string format = std::string(name).substr(std::string(name).rfind('.') + 1);
    std::string upper = format == "webp" ? "WebP" : format == "gif" ? "GIF" : "BMP";
    std::string truncated = decode_error(bytes.substr(0, bytes.size() / 2));
    EXPECT_NE(truncated.find("truncated"), std::string::npos) << truncated;
    EXPECT_NE(truncated.find(upper), std::string::npos) << truncated;
    EXPECT_NE(decode_error(bytes.substr(0, 20)).find(upper), std::string::npos);
    // The decompression-bomb limit reads the header: every image here is over 100 pixels.
    EXPECT_NE(decode_error(bytes, 100).find("more than the 100 allowed"), std::string::npos);
  }
  using namespace std::string_literals;
  EXPECT_NE(decode_error("GIF89a\x01\x00\x01\x00garbage"s).find("GIF is corrupt"),
            std::string::npos);
  std::string webp = decode_error("RIFF\x10\x00\x00\x00WEBPVP8 garbage"s);
  EXPECT_NE(webp.find("WebP is"), std::string::npos) << webp;
  // Formats PIL opens but epserve does not decode are refused by name.
  EXPECT_NE(decode_error("II*\0\x08\0\0\0"s)
                .find("the image is tiff; epserve decodes PNG, JPEG, "
                      "WebP, GIF and BMP only"),
            std::string::npos);
}

// BMP headers epserve refuses, each by name, in the decoder and the probe alike: layouts
// stb_image would decode differently from PIL, and corrupt sizes (a negative width, a height
// too large to multiply safely).
TEST(ImageFormats, BmpLayoutsAndSizesItCannotMatchAreRefused) {
  const std::string good = read_file(formats_dir() + "rgb24_27x21.bmp");
  auto with = [&](size_t at, uint32_t value, int bytes) {
    std::string b = good;
    for (int i = 0; i < bytes; ++i) b[at + i] = static_cast<char>((value >> (8 * i)) & 0xff);
    return b;
  };
  const std::pair<std::string, std::string> cases[] = {
      {with(30, 1, 4), "RLE-compressed"},
      {with(30, 3, 4), "compression 3"},
      {with(28, 16, 2), "16-bit pixels"},
      {with(18, static_cast<uint32_t>(-27), 4), "its size is -27x21"},
      {with(22, 0x40000000u, 4), "its size is 27x1073741824"},
      {with(22, 0, 4), "its size is 27x0"},
  };
  for (const auto& [bytes, needle] : cases) {
    SCOPED_TRACE(needle);
    EXPECT_NE(decode_error(bytes).find(needle), std::string::npos) << decode_error(bytes);
    EXPECT_NE(probe_error(bytes).find(needle), std::string::npos) << probe_error(bytes);
  }
  // A top-down BMP (negative height) is 27x21 to both, and counts against the pixel limit.
  const std::string top_down = read_file(formats_dir() + "top_down_27x21.bmp");
  EXPECT_EQ(probe_image_size(top_down).height, 21);
  EXPECT_NE(decode_error(top_down, 500).find("more than the 500 allowed"), std::string::npos);
  EXPECT_NE(probe_error(with(22, static_cast<uint32_t>(-20000), 4)).find("truncated"),
            std::string::npos);
}

// Mutated files (bytes flipped, cut short, lengths garbled) must decode or be refused with
// epserve::Error, never crash or throw anything else; so must their header probe. Seeded, so a
// failure reproduces.
TEST(ImageFormats, MutatedFilesDecodeOrAreRefused) {
  auto reference = SafetensorsFile::open(formats_dir() + "formats_rgb.safetensors");
  std::vector<std::string> files;
  for (const auto& [name, info] : reference->header().tensors) {
    files.push_back(read_file(formats_dir() + name));
  }
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int refused = 0, decoded = 0;
  for (const std::string& original : files) {
    for (int round = 0; round < 150; ++round) {
      std::string bytes = original;
      const int flips = 1 + static_cast<int>(next() % 4);
      for (int f = 0; f < flips; ++f) {
        // Keep the first 8 bytes half of the time so that the format is still recognised.
        size_t lo = (next() & 1) ? std::min<size_t>(8, bytes.size() - 1) : 0;
        bytes[lo + next() % (bytes.size() - lo)] = static_cast<char>(next());
      }
      if (next() % 4 == 0) bytes.resize(8 + next() % (bytes.size() - 8));
      // The header probe (a PD decode server's) sizes or refuses the same bytes; where both
      // succeed, it gives the decoded size.
      ImageSize size{-1, -1};
      bool probed = false;
      try {
        size = probe_image_size(bytes, 1 << 20);
        probed = true;
        EXPECT_GT(size.width, 0);
        EXPECT_GT(size.height, 0);
      } catch (const Error&) {
      }
      try {
        DecodedImage image = decode_image(bytes, 1 << 20);
        // What decodes, the probe sizes alike (a PD decode server must not refuse it).
        EXPECT_TRUE(probed);
        EXPECT_EQ(size.width, image.width);
        EXPECT_EQ(size.height, image.height);
        EXPECT_EQ(static_cast<int64_t>(image.rgb.size()), image.width * image.height * 3);
        ++decoded;
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(decoded, 100);
}

}  // namespace
}  // namespace epserve::media
