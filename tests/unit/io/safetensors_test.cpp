#include "io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// A safetensors image from a literal header and `data_bytes` bytes of data.
std::string image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + std::string(data_bytes, '\x01');
}

std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                             "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  TempDir dir;
  std::vector<TensorToWrite> tensors = {
      {"a",
       DType::F32,
       {2, 3},
       [](void* p, size_t n) {
         float* f = static_cast<float*>(p);
         for (int i = 0; i < 6; ++i) f[i] = i * 0.5f;
       }},
      {"b",
       DType::BF16,
       {4},
       [](void* p, size_t) {
         bf16_t* b = static_cast<bf16_t*>(p);
         for (int i = 0; i < 4; ++i) b[i] = f32_to_bf16(i + 1.0f);
       }},
  };
  write_safetensors(dir.file("m.safetensors"), tensors, {{"format", "pt"}});
  auto file = SafetensorsFile::open(dir.file("m.safetensors"));
  EXPECT_EQ(file->header().metadata.at("format"), "pt");
  Tensor a = file->get("a");
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.ptr<float>()[5], 2.5f);
  Tensor b = file->get("b");
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(bf16_to_f32(b.ptr<bf16_t>()[3]), 4.0f);
  EXPECT_THAT(
      [&] {
        try {
          file->get("c");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("no tensor named 'c'"));
}

TEST(Safetensors, RejectsFilesTooShortForAHeader) {
  EXPECT_THAT(parse_error("abc"), HasSubstr("too short"));
}

TEST(Safetensors, RejectsHeaderLengthPastTheEnd) {
  std::string bytes = image("{}", 0);
  bytes[0] = 100;
  EXPECT_THAT(parse_error(bytes), HasSubstr("runs past the end of the file"));
}

TEST(Safetensors, RejectsMalformedJsonAndBadUtf8) {
  EXPECT_THAT(parse_error(image("{\"a\": ", 0)), HasSubstr("not valid JSON"));
  EXPECT_THAT(parse_error(image("{\"\xff\": {}}", 0)), HasSubstr("not valid JSON"));
  EXPECT_THAT(parse_error(image("[1, 2]", 0)), HasSubstr("not a JSON object"));
}

TEST(Safetensors, RejectsOffsetsThatDisagreeWithShape) {
  std::string h = R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})";
  EXPECT_THAT(parse_error(image(h, 16)), HasSubstr("need 16"));
}

TEST(Safetensors, RejectsOffsetsPastTheData) {
  std::string h = R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  EXPECT_THAT(parse_error(image(h, 8)), HasSubstr("truncated file or a header that lies"));
}

TEST(Safetensors, RejectsUnknownDtypeAndBadFields) {
  EXPECT_THAT(
      parse_error(image(R"({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", 1)),
      HasSubstr("unknown dtype 'Q4'"));
  EXPECT_THAT(
      parse_error(image(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)),
      HasSubstr("non-negative"));
  EXPECT_THAT(parse_error(image(R"({"w": {"dtype": "F32", "shape": [1]}})", 4)),
              HasSubstr("data_offsets"));
  EXPECT_THAT(
      parse_error(image(
          R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
          4)),
      HasSubstr("too large"));
}

TEST(Safetensors, RejectsOverlappingTensors) {
  std::string h = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(parse_error(image(h, 12)), HasSubstr("overlap"));
}

TEST(Safetensors, TruncatedFileOnDiskNamesTheFile) {
  TempDir dir;
  std::vector<TensorToWrite> tensors = {
      {"w", DType::F32, {1024}, [](void* p, size_t n) { std::memset(p, 0, n); }}};
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, tensors);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  try {
    SafetensorsFile::open(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("tensor 'w'"));
  }
}

}  // namespace
}  // namespace epserve
