// The epserve binary on bad input: one line that names the problem, a non-zero exit, no crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "support/run_epserve.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

using testing::RunResult;

RunResult run(const std::string& args) {
  return testing::run_epserve(args);
}

std::string fixture(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

// A copy of a fixture model that a test may damage.
std::string copy_fixture(const testing::TempDir& dir, const std::string& name) {
  std::string dst = dir.file(name);
  std::filesystem::copy(fixture(name), dst, std::filesystem::copy_options::recursive);
  return dst;
}

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(r.signaled) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epserve: error: "));
  EXPECT_THAT(r.output, HasSubstr(needle));
}

TEST(CliErrors, GenerateWorks) {
  RunResult r = run("generate --model-path " + fixture("qwen3_moe_tiny") +
                    " --input-ids 5,6,7 --max-new-tokens 3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"output_ids\""));
}

TEST(CliErrors, RecorderModeWithoutADumpIsRefused) {
  // generate has no /dump_expert_distribution_record: a mode that feeds nothing is an error.
  expect_one_line_error(run("generate --model-path " + fixture("qwen3_moe_tiny") +
                            " --input-ids 5 --expert-distribution-recorder-mode per_token"),
                        "--expert-distribution-recorder-mode");
  expect_one_line_error(run("bench-one-batch --model-path " + fixture("qwen3_moe_tiny") +
                            " --batch-size 1 --input-len 4 --output-len 2"
                            " --expert-distribution-recorder-mode per_pass"),
                        "cannot dump its records");
}

TEST(CliErrors, MissingShard) {
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "qwen3_moe_tiny_sharded");
  std::filesystem::remove(model + "/model-00002-of-00004.safetensors");
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"),
                        "model-00002-of-00004.safetensors: shard listed in");
}

TEST(CliErrors, TruncatedFile) {
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "deepseek_v3_tiny");
  std::string file = model + "/model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) / 2);
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"), "truncated file");
}

TEST(CliErrors, HeaderThatLiesAboutOffsets) {
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "qwen3_moe_tiny");
  std::string file = model + "/model.safetensors";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  std::string head(4096, '\0');
  f.read(head.data(), head.size());
  // Make the first tensor claim one element more than its bytes hold: [64] -> [65] keeps the
  // header length, so the lie is only in the shape/offset agreement.
  size_t pos = head.find("\"shape\":[1024,64]");
  ASSERT_NE(pos, std::string::npos);
  head.replace(pos, 17, "\"shape\":[1024,65]");
  f.seekp(0);
  f.write(head.data(), head.size());
  f.close();
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"), "need");
}

TEST(CliErrors, WrongShape) {
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "qwen3_moe_tiny");
  std::string config = model + "/config.json";
  std::string text;
  {
    std::ifstream in(config);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("\"moe_intermediate_size\": 32"), 27, "\"moe_intermediate_size\": 48");
  std::ofstream(config) << text;
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"),
                        "expected shape [48, 64], found [32, 64]");
}

TEST(CliErrors, BadConfigAndBadFlags) {
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "qwen3_moe_tiny");
  std::ofstream(model + "/config.json") << "{\"architectures\": \xff}";
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"), "config.json");
  expect_one_line_error(
      run("generate --model-path " + fixture("qwen3_moe_tiny") + " --input-ids 5,x"),
      "'x' is not a token id");
  expect_one_line_error(
      run("generate --model-path " + fixture("qwen3_moe_tiny") + " --input-ids 5000"),
      "outside the vocabulary");
  expect_one_line_error(run("generate --model-path /nonexistent --input-ids 5"), "does not exist");
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

TEST(CliGenerate, TextAndChatPromptsGoThroughTheTokenizerAndTemplate) {
  std::string model = fixture("qwen3_moe_tiny");
  RunResult ids = run("tokenize --model-path " + model + " --text 'Hello world'");
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  std::string expected = "[" + ids.output.substr(0, ids.output.find('\n')) + "]";
  std::replace(expected.begin(), expected.end(), ' ', ',');
  RunResult r =
      run("generate --model-path " + model + " --prompt 'Hello world' --max-new-tokens 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"input_ids\":" + expected));
  EXPECT_THAT(r.output, HasSubstr("\"text\":"));
  RunResult chat =
      run("generate --model-path " + model +
          " --chat '[{\"role\":\"user\",\"content\":\"Hi, you\"}]' --max-new-tokens 2");
  ASSERT_EQ(chat.exit_code, 0) << chat.output;
  // Qwen3's template opens the user turn with <|im_start|> (id 1) and ends it with <|im_end|> (2).
  EXPECT_THAT(chat.output, HasSubstr("\"input_ids\":[1,"));
}

TEST(CliMakeModel, WritesAModelThatLoadsAndCarriesItsTokenizer) {
  testing::TempDir dir;
  RunResult r = run("make-model --arch deepseek_v3 --preset tiny --output " + dir.file("m"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("m/tokenizer.json")));
  RunResult g = run("generate --model-path " + dir.file("m") + " --prompt hi --max-new-tokens 3");
  EXPECT_EQ(g.exit_code, 0) << g.output;
  expect_one_line_error(
      run("make-model --arch deepseek_v3 --vocab-size 100 --output " + dir.file("small")),
      "smaller than the family tokenizer");
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

// --quantization as SGLang reads it: the checkpoint's own method (or none) runs; another method,
// or online quantization of a BF16 checkpoint, is one error line.
TEST(CliErrors, QuantizationFlag) {
  const std::string fp8 = fixture("deepseek_v3_tiny_fp8");
  EXPECT_EQ(run("generate --model-path " + fp8 + " --input-ids 5 --quantization fp8").exit_code, 0);
  EXPECT_EQ(run("generate --model-path " + fixture("kimi_k2_tiny_int4") +
                " --input-ids 5 --quantization compressed-tensors")
                .exit_code,
            0);
  expect_one_line_error(
      run("generate --model-path " + fp8 + " --input-ids 5 --quantization compressed-tensors"),
      "the quantization method specified in the model config (fp8) does not match");
  expect_one_line_error(run("generate --model-path " + fixture("deepseek_v3_tiny") +
                            " --input-ids 5 --quantization fp8"),
                        "the checkpoint is not quantized");
  expect_one_line_error(run("generate --model-path " + fp8 + " --input-ids 5 --quantization int3"),
                        "unknown quantization method");
  // A config whose group size disagrees with the packed tensors: the error names the tensor.
  testing::TempDir dir;
  std::string model = copy_fixture(dir, "kimi_k2_tiny_int4");
  std::string config = model + "/config.json";
  std::string text;
  {
    std::ifstream in(config);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("\"group_size\": 32"), 16, "\"group_size\": 16");
  std::ofstream(config) << text;
  expect_one_line_error(run("generate --model-path " + model + " --input-ids 5"),
                        "model.layers.1.mlp.experts.0.gate_proj");
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

// make-model writes DeepSeek-V3's FP8 and Kimi-K2-Thinking's INT4 formats, which load and run;
// tools/reference/check_make_model_quant.py checks their bytes against torch and
// compressed-tensors.
TEST(CliMakeModel, WritesFp8AndInt4Checkpoints) {
  testing::TempDir dir;
  for (const char* q : {"fp8", "int4"}) {
    SCOPED_TRACE(q);
    const std::string out = dir.file(q);
    RunResult r = run(std::string("make-model --arch deepseek_v3 --preset tiny --quantization ") +
                      q + " --output " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(out + "/config.json");
    std::string config((std::istreambuf_iterator<char>(in)), {});
    EXPECT_THAT(config, HasSubstr(std::string(q) == "fp8" ? "\"weight_block_size\""
                                                          : "\"pack-quantized\""));
    RunResult g = run("generate --model-path " + out + " --input-ids 5,6 --max-new-tokens 3");
    EXPECT_EQ(g.exit_code, 0) << g.output;
  }
  expect_one_line_error(
      run("make-model --arch deepseek_v3 --quantization int8 --output " + dir.file("bad")),
      "--quantization 'int8' is not one of fp8");
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

// The tiny Kimi-K2-shaped INT4 model carries Kimi's tiktoken tokenizer and chat template.
TEST(CliGenerate, KimiTinyChatsThroughItsTiktokenTokenizer) {
  RunResult r = run("generate --model-path " + fixture("kimi_k2_tiny_int4") +
                    " --chat '[{\"role\":\"user\",\"content\":\"Hi\"}]' --max-new-tokens 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(",768,"));  // <|im_end|> closes the rendered system turn
}

// plan refuses rank counts and redundant-expert counts that mean nothing, in one line.
TEST(CliErrors, PlanRefusesBadCounts) {
  const std::string config = std::string(EPSERVE_SOURCE_DIR) + "/tests/data/configs/deepseek_v3";
  expect_one_line_error(run("plan --model-path " + config + " --world-sizes 8 0"),
                        "--world-sizes: 0 is not a rank count");
  expect_one_line_error(run("plan --model-path " + config + " --ep-num-redundant-experts -1"),
                        "--ep-num-redundant-experts must be >= 0");
}

}  // namespace
}  // namespace epserve
