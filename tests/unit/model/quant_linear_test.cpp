// Linear::load on block-scaled checkpoints: the weight stays quantized, its values are the
// checkpoint's dequantised ones, and bad input is one error line naming the tensor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "io/safetensors_writer.h"
#include "kernels/cpu/matmul_quant.h"
#include "model/layers.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TensorToWrite tensor_of(const std::string& name, DType dtype, Shape shape,
                        std::function<void(uint8_t*, size_t)> fill) {
  return {name, dtype, shape, [fill](void* dst, size_t n) { fill(static_cast<uint8_t*>(dst), n); }};
}

constexpr const char* kFp8Config =
    R"({"quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
        "activation_scheme": "dynamic", "weight_block_size": [16, 16]}})";
constexpr const char* kInt4Config = R"({"quantization_config": {"quant_method":
    "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0": {"targets":
    ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group",
    "group_size": 32}}}, "ignore": ["lm_head"]}})";

// An FP8 weight [40, 24] (scales [3, 2] for 16x16 blocks) and a packed INT4 one [8, 64].
struct Checkpoint {
  testing::TempDir dir;
  Checkpoint(const char* config, std::vector<TensorToWrite> tensors) {
    dir.write("config.json", config);
    write_safetensors(dir.file("model.safetensors"), tensors);
  }
};

std::vector<TensorToWrite> fp8_tensors(Shape scale_shape) {
  return {tensor_of("l.weight", DType::F8_E4M3, {40, 24},
                    [](uint8_t* p, size_t n) {
                      for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 37) % 0x7e);
                    }),
          tensor_of("l.weight_scale_inv", DType::F32, scale_shape, [](uint8_t* p, size_t n) {
            for (size_t i = 0; i < n / 4; ++i) {
              float s = 0.5f + static_cast<float>(i);
              std::memcpy(p + 4 * i, &s, 4);
            }
          })};
}

std::vector<TensorToWrite> int4_tensors(std::vector<int32_t> shape) {
  return {tensor_of("e.weight_packed", DType::I32, {8, 8},
                    [](uint8_t* p, size_t n) {
                      for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 29);
                    }),
          tensor_of("e.weight_scale", DType::BF16, {8, 2},
                    [](uint8_t* p, size_t n) {
                      for (size_t i = 0; i < n / 2; ++i) {
                        bf16_t s = f32_to_bf16(0.25f * static_cast<float>(i + 1));
                        std::memcpy(p + 2 * i, &s, 2);
                      }
                    }),
          tensor_of("e.weight_shape", DType::I32, {2},
                    [shape](uint8_t* p, size_t) { std::memcpy(p, shape.data(), 8); })};
}

std::string load_error(const std::string& dir, const std::string& name, int64_t out, int64_t in) {
  try {
    ModelWeights w = ModelWeights::open(dir);
    Linear::load(w, name, out, in);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(QuantLinear, Fp8StaysFp8WithItsBlockScales) {
  Checkpoint c(kFp8Config, fp8_tensors({3, 2}));
  ModelWeights w = ModelWeights::open(c.dir.path());
  Linear l = Linear::load(w, "l.weight", 40, 24);
  ASSERT_EQ(l.view().format, WeightFormat::kFp8Block);
  EXPECT_EQ(l.view().dtype, DType::F8_E4M3);
  Tensor q = w.raw("l.weight");
  for (int64_t r = 0; r < 40; ++r) {
    for (int64_t k = 0; k < 24; ++k) {
      const float scale = 0.5f + static_cast<float>((r / 16) * 2 + k / 16);
      ASSERT_EQ(l.view().at(r, k), fp8_e4m3_to_f32(q.ptr<uint8_t>()[r * 24 + k]) * scale);
    }
  }
  // A shard's rows keep their blocks.
  EXPECT_EQ(l.rows(17, 40).view().at(0, 20), l.view().at(17, 20));
}

// MLA's W_uk per head: rows of an FP8 weight, transposed. FP8 with moved scales when the rows
// start on a block boundary or lie in one block row, F32 when they straddle blocks; the values
// are the layer's either way, also through a row shard (row0 != 0), and a matmul over the
// transposed matrix equals the untransposed product.
TEST(QuantLinear, TransposedRowsKeepFp8WhenTheBlocksLineUp) {
  Checkpoint c(kFp8Config, fp8_tensors({3, 2}));
  ModelWeights w = ModelWeights::open(c.dir.path());
  Linear l = Linear::load(w, "l.weight", 40, 24);
  struct Case {
    Linear from;
    int64_t begin, end;
    WeightFormat format;
  };
  const Linear shard = l.rows(8, 40);  // row0 8: shard rows 8..15 are layer rows 16..23
  for (const Case& k : {Case{l, 16, 28, WeightFormat::kFp8Block},     // from a block boundary
                        Case{l, 0, 40, WeightFormat::kFp8Block},      // the whole matrix
                        Case{l, 18, 30, WeightFormat::kFp8Block},     // inside block row 1
                        Case{l, 10, 20, WeightFormat::kDense},        // straddles rows 15/16
                        Case{shard, 8, 24, WeightFormat::kFp8Block},  // layer rows 16..31
                        Case{shard, 4, 12, WeightFormat::kDense}}) {  // layer rows 12..19
    SCOPED_TRACE(::testing::Message() << k.begin << ".." << k.end);
    Linear t = k.from.transposed_rows(k.begin, k.end);
    ASSERT_EQ(t.view().format, k.format);
    ASSERT_EQ(t.out_features(), 24);
    ASSERT_EQ(t.in_features(), k.end - k.begin);
    for (int64_t r = 0; r < k.end - k.begin; ++r) {
      for (int64_t col = 0; col < 24; ++col) {
        ASSERT_EQ(t.view().at(col, r), k.from.view().at(k.begin + r, col)) << r << "," << col;
      }
    }
    std::vector<float> x(2 * (k.end - k.begin)), y(2 * 24), expected(2 * 24);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i % 7) - 0.5f;
    t.forward(x.data(), 2, y.data());
    matmul_untransposed_reference(x.data(), k.end - k.begin, 2,
                                  k.from.view().row_slice(k.begin, k.end), expected.data(), 24);
    for (size_t i = 0; i < y.size(); ++i)
      EXPECT_NEAR(y[i], expected[i], 1e-3f * (1 + std::abs(expected[i])));
  }
}

// DeepSeek-V3's shape of kv_b_proj for two heads (nope 128, v 128, kv_lora 256, 128x128 blocks):
// each head's W_uk transposed is FP8 [256, 128], which takes the CPU's native FP8 path (bf16
// products on AVX512-BF16), within bf16 rounding of the exact product.
TEST(QuantLinear, TransposedRowsOfDeepSeekShapeRunTheNativeFp8Path) {
  constexpr const char* kConfig =
      R"({"quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
          "activation_scheme": "dynamic", "weight_block_size": [128, 128]}})";
  Checkpoint c(kConfig,
               {tensor_of("kv.weight", DType::F8_E4M3, {512, 256},
                          [](uint8_t* p, size_t n) {
                            for (size_t i = 0; i < n; ++i)
                              p[i] = static_cast<uint8_t>((i * 53 + i / 256) % 0x7e) |
                                     static_cast<uint8_t>((i % 3 == 0) << 7);
                          }),
                tensor_of("kv.weight_scale_inv", DType::F32, {4, 2}, [](uint8_t* p, size_t n) {
                  for (size_t i = 0; i < n / 4; ++i) {
                    float s = 0.01f * static_cast<float>(i + 1);
                    std::memcpy(p + 4 * i, &s, 4);
                  }
                })});
  ModelWeights w = ModelWeights::open(c.dir.path());
  Linear kv_b = Linear::load(w, "kv.weight", 512, 256);
  for (int64_t head = 0; head < 2; ++head) {
    Linear t = kv_b.transposed_rows(head * 256, head * 256 + 128);
    ASSERT_EQ(t.view().format, WeightFormat::kFp8Block);
    const int64_t T = 3;
    std::vector<float> x(T * 128), y(T * 256);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    t.forward(x.data(), T, y.data());
    for (int64_t tok = 0; tok < T; ++tok) {
      for (int64_t l = 0; l < 256; ++l) {
        double exact = 0, magnitude = 0;
        for (int64_t d = 0; d < 128; ++d) {
          const double v =
              static_cast<double>(x[tok * 128 + d]) * kv_b.view().at(head * 256 + d, l);
          exact += v;
          magnitude += std::abs(v);
        }
        ASSERT_NEAR(y[tok * 256 + l], exact, 1e-5 + magnitude * (1.0 / 128)) << tok << "," << l;
      }
    }
  }
}

TEST(QuantLinear, Int4StaysPacked) {
  Checkpoint c(kInt4Config, int4_tensors({8, 64}));
  ModelWeights w = ModelWeights::open(c.dir.path());
  Linear l = Linear::load(w, "e.weight", 8, 64);
  ASSERT_EQ(l.view().format, WeightFormat::kInt4Group);
  Tensor packed = w.raw("e.weight_packed");
  const uint32_t word = packed.ptr<uint32_t>()[3 * 8 + 5];  // row 3, columns 40..47
  const float scale = 0.25f * 8;                            // row 3, group 1 -> index 7
  EXPECT_EQ(l.view().at(3, 42), (static_cast<int>((word >> 8) & 0xf) - 8) * scale);
  auto [values, scales] = l.stored_bytes();
  EXPECT_EQ(values.size(), 8u * 8 * 4);
  EXPECT_EQ(scales.size(), 8u * 2 * 2);
}

TEST(QuantLinear, BadInputIsOneLineNamingTheTensor) {
  {
    Checkpoint c(kFp8Config, fp8_tensors({3, 3}));
    std::string e = load_error(c.dir.path(), "l.weight", 40, 24);
    EXPECT_THAT(e, HasSubstr("'l.weight_scale_inv'"));
    EXPECT_THAT(e, HasSubstr("must be F32 [3, 2]"));
    EXPECT_THAT(e, HasSubstr("found F32 [3, 3]"));
    EXPECT_THAT(e, Not(HasSubstr("\n")));
  }
  {
    Checkpoint c(kInt4Config, int4_tensors({8, 72}));
    std::string e = load_error(c.dir.path(), "e.weight", 8, 64);
    EXPECT_THAT(e, HasSubstr("'e.weight_shape' says [8, 72], expected [8, 64]"));
    EXPECT_THAT(e, Not(HasSubstr("\n")));
  }
  {
    // FP8 values without an fp8 quantization_config.
    Checkpoint c("{}", fp8_tensors({3, 2}));
    EXPECT_THAT(load_error(c.dir.path(), "l.weight", 40, 24),
                HasSubstr("tensor 'l.weight' is float8_e4m3fn but config.json has no fp8"));
  }
  {
    Checkpoint c(R"({"quantization_config": {"quant_method": "bitnet"}})", fp8_tensors({3, 2}));
    EXPECT_THAT(load_error(c.dir.path(), "l.weight", 40, 24),
                HasSubstr("quant_method 'bitnet' is not supported"));
  }
  {
    std::vector<TensorToWrite> t = fp8_tensors({3, 2});
    t.pop_back();
    Checkpoint c(kFp8Config, t);
    EXPECT_THAT(load_error(c.dir.path(), "l.weight", 40, 24),
                HasSubstr("'l.weight' is float8_e4m3fn but 'l.weight_scale_inv' is missing"));
  }
}

// The rank's weight bytes (rank_weight_bytes, which sizes the KV cache) sum ModelWeights::nbytes
// over the checkpoint's tensors: for a quantized expert that is its packed values and scales.
TEST(QuantLinear, WeightBytesAreTheQuantizedBytes) {
  ModelWeights w =
      ModelWeights::open(std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/kimi_k2_tiny_int4");
  const std::string e = "model.layers.1.mlp.experts.3.gate_proj";
  EXPECT_FALSE(w.has(e + ".weight"));
  EXPECT_EQ(w.nbytes(e + ".weight_packed") + w.nbytes(e + ".weight_scale"),
            32u * 64 / 2 + 32 * 2 * 2);
  Linear l = Linear::load(w, e + ".weight", 32, 64);
  EXPECT_EQ(weight_bytes(l.view()), 32 * 64 / 2 + 32 * 2 * 2);
}

}  // namespace
}  // namespace epserve
