#include "io/model_weights.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

TensorToWrite f32_tensor(const std::string& name, Shape shape, float value) {
  return {name, DType::F32, shape, [value](void* p, size_t n) {
            float* f = static_cast<float*>(p);
            for (size_t i = 0; i < n / 4; ++i) f[i] = value;
          }};
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelWeights, ShardedDirectoryWithIndex) {
  TempDir dir;
  std::vector<TensorToWrite> tensors = {f32_tensor("a", {256}, 1.0f), f32_tensor("b", {256}, 2.0f),
                                        f32_tensor("c", {256}, 3.0f)};
  write_model_safetensors(dir.path(), tensors, 1500);
  ASSERT_TRUE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  ModelWeights w = ModelWeights::open(dir.path());
  EXPECT_EQ(w.get_f32("c", {256}).f32()[7], 3.0f);
  EXPECT_THAT(w.file_of("c"), HasSubstr("model-00003-of-00003.safetensors"));
}

TEST(ModelWeights, MissingShardIsNamed) {
  TempDir dir;
  write_model_safetensors(dir.path(), {f32_tensor("a", {256}, 1.0f), f32_tensor("b", {256}, 1.0f)},
                          1500);
  std::filesystem::remove(dir.file("model-00002-of-00002.safetensors"));
  EXPECT_THAT(error_of([&] { ModelWeights::open(dir.path()); }),
              AllOf(HasSubstr("model-00002-of-00002.safetensors"), HasSubstr("missing")));
}

TEST(ModelWeights, IndexListingATensorTheShardLacks) {
  TempDir dir;
  write_model_safetensors(dir.path(), {f32_tensor("a", {256}, 1.0f), f32_tensor("b", {256}, 1.0f)},
                          1500);
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                               "zz": "model-00001-of-00002.safetensors"}})");
  EXPECT_THAT(error_of([&] { ModelWeights::open(dir.path()); }),
              AllOf(HasSubstr("'zz'"), HasSubstr("not in the shard")));
}

TEST(ModelWeights, WrongShapeAndDtypeNameFileTensorExpectedAndFound) {
  TempDir dir;
  std::vector<TensorToWrite> tensors = {
      f32_tensor("w", {4, 8}, 1.0f),
      {"ids", DType::I32, {4}, [](void* p, size_t n) { std::memset(p, 0, n); }}};
  write_model_safetensors(dir.path(), tensors, 1 << 20);
  ModelWeights w = ModelWeights::open(dir.path());
  EXPECT_THAT(error_of([&] {
                w.get("w", {8, 4});
              }),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"),
                    HasSubstr("expected shape [8, 4]"), HasSubstr("found [4, 8]")));
  EXPECT_THAT(error_of([&] { w.get("ids", {4}); }),
              AllOf(HasSubstr("'ids'"), HasSubstr("expected dtype"), HasSubstr("found I32")));
  EXPECT_THAT(error_of([&] { w.get("nope", {1}); }), HasSubstr("'nope' not found"));
}

TEST(ModelWeights, F16MatricesAreWidenedToF32) {
  TempDir dir;
  std::vector<TensorToWrite> tensors = {{"h", DType::F16, {2, 2}, [](void* p, size_t) {
                                           f16_t* h = static_cast<f16_t*>(p);
                                           for (int i = 0; i < 4; ++i) h[i] = f32_to_f16(i - 1.5f);
                                         }}};
  write_model_safetensors(dir.path(), tensors, 1 << 20);
  ModelWeights w = ModelWeights::open(dir.path());
  Tensor m = w.matrix("h", {2, 2});
  ASSERT_EQ(m.dtype(), DType::F32);
  EXPECT_EQ(m.f32()[3], 1.5f);
}

TEST(ModelWeights, EmptyDirectoryAndMissingDirectory) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { ModelWeights::open(dir.path()); }), HasSubstr("no *.safetensors"));
  EXPECT_THAT(error_of([&] { ModelWeights::open(dir.file("absent")); }),
              HasSubstr("does not exist"));
}

}  // namespace
}  // namespace epserve
