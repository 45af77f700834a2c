#include "io/quant_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace epserve {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// DeepSeek-V3's quantization_config as published.
json deepseek_fp8() {
  return json::parse(R"({"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
      "quant_method": "fp8", "weight_block_size": [128, 128]}})");
}

// A quantization_config shaped as Kimi-K2-Thinking's (compressed-tensors pack-quantized).
json kimi_int4() {
  return json::parse(R"({"quantization_config": {
    "config_groups": {"group_0": {"input_activations": null, "output_activations": null,
      "targets": ["Linear"], "weights": {"actorder": null, "block_structure": null,
      "dynamic": false, "group_size": 32, "num_bits": 4, "observer": "minmax",
      "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"}}},
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
               "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors",
    "quantization_status": "compressed"}})");
}

std::string error_of(const json& j) {
  try {
    parse_quant_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string flag_error(const QuantConfig& q, const std::string& flag) {
  try {
    resolve_quantization_flag(q, flag);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(QuantConfig, DeepseekFp8) {
  QuantConfig q = parse_quant_config(deepseek_fp8(), "config.json");
  EXPECT_EQ(q.method, QuantMethod::kFp8Block);
  EXPECT_EQ(q.quant_method, "fp8");
  EXPECT_EQ(q.block_rows, 128);
  EXPECT_EQ(q.block_cols, 128);
  EXPECT_EQ(q.describe(), "fp8 (e4m3, 128x128 blocks)");
}

TEST(QuantConfig, KimiInt4AndItsIgnoreList) {
  QuantConfig q = parse_quant_config(kimi_int4(), "config.json");
  EXPECT_EQ(q.method, QuantMethod::kInt4Pack);
  EXPECT_EQ(q.group_size, 32);
  EXPECT_TRUE(q.symmetric);
  EXPECT_TRUE(q.is_ignored("lm_head"));
  EXPECT_TRUE(q.is_ignored("model.layers.3.self_attn.kv_b_proj"));
  EXPECT_TRUE(q.is_ignored("model.layers.3.mlp.shared_experts.down_proj"));
  EXPECT_TRUE(q.is_ignored("model.layers.0.mlp.gate_proj"));  // the dense layer
  EXPECT_FALSE(q.is_ignored("model.layers.3.mlp.experts.17.gate_proj"));
  EXPECT_FALSE(q.is_ignored("model.layers.3.mlp.gate"));
}

TEST(QuantConfig, OlderCompressionConfigKeyAndNone) {
  json j = kimi_int4();
  j["compression_config"] = j["quantization_config"];
  j.erase("quantization_config");
  EXPECT_EQ(parse_quant_config(j, "c").method, QuantMethod::kInt4Pack);
  EXPECT_EQ(parse_quant_config(json::object(), "c").method, QuantMethod::kNone);
  EXPECT_EQ(parse_quant_config(json::object(), "c").describe(), "none");
}

TEST(QuantConfig, RefusesWhatItCannotRun) {
  json j = deepseek_fp8();
  j["quantization_config"]["quant_method"] = "awq";
  EXPECT_THAT(error_of(j), HasSubstr("quant_method 'awq' is not supported"));
  j = deepseek_fp8();
  j["quantization_config"].erase("weight_block_size");
  EXPECT_THAT(error_of(j), HasSubstr("without weight_block_size"));
  j = kimi_int4();
  j["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 8;
  EXPECT_THAT(error_of(j), HasSubstr("num_bits 8"));
  j = kimi_int4();
  j["quantization_config"]["format"] = "int-quantized";
  EXPECT_THAT(error_of(j), HasSubstr("format 'int-quantized' is not supported"));
  j = kimi_int4();
  j["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = false;
  EXPECT_THAT(error_of(j), HasSubstr("symmetric false"));
}

TEST(QuantConfig, QuantizationFlagFollowsSglang) {
  QuantConfig fp8 = parse_quant_config(deepseek_fp8(), "c");
  QuantConfig int4 = parse_quant_config(kimi_int4(), "c");
  QuantConfig none;
  EXPECT_EQ(flag_error(fp8, ""), "");
  EXPECT_EQ(flag_error(fp8, "fp8"), "");
  EXPECT_EQ(flag_error(int4, "compressed-tensors"), "");
  EXPECT_EQ(flag_error(none, ""), "");
  EXPECT_THAT(flag_error(fp8, "compressed-tensors"),
              HasSubstr("the quantization method specified in the model config (fp8) does not "
                        "match the quantization method specified in the `quantization` argument "
                        "(compressed-tensors)"));
  EXPECT_THAT(flag_error(none, "fp8"), HasSubstr("the checkpoint is not quantized"));
  EXPECT_THAT(flag_error(int4, "awq"), HasSubstr("does not match"));
  EXPECT_THAT(flag_error(none, "gptq"), HasSubstr("not implemented"));
  EXPECT_THAT(flag_error(none, "fp9"), HasSubstr("unknown quantization method"));
}

}  // namespace
}  // namespace epserve
