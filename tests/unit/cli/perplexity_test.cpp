// `epserve perplexity` against transformers: the strided-window NLL of the tiny fixture models on
// tests/data/perplexity/sample.txt must equal what tools/train/perplexity_reference.py computed
// with transformers (fp32, recorded in tests/data/perplexity/reference.json): the same token
// count, windows and scored tokens exactly, the mean NLL within 1e-5 relative (fp32 logits agree
// to ~1e-5 absolute on logits of size ~14, see tools/reference/README.md; measured: below 1e-8).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/matmul_order.h"
#include "support/run_epserve.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string source_path(const std::string& relative) {
  return std::string(EPSERVE_SOURCE_DIR) + "/" + relative;
}

testing::RunResult run(const std::string& args) {
  return testing::run_epserve(args);
}

nlohmann::json reference_cases() {
  std::ifstream in(source_path("tests/data/perplexity/reference.json"));
  return nlohmann::json::parse(in)["cases"];
}

// With the BF16 order of matmul (a CPU with AVX512-BF16: activations rounded to bf16 before
// each product) the tiny models' mean NLL moves by up to 9.2e-4 relative (measured on Zen 5).
TEST(Perplexity, TinyModelsMatchTransformers) {
  const double tolerance = testing::bf16_matmul_order() ? 2e-3 : 1e-5;
  int checked = 0;
  for (const auto& ref : reference_cases()) {
    const std::string model = ref["model_path"];
    if (model.rfind("tests/data/models/", 0) != 0) continue;  // models/default: multirank test
    SCOPED_TRACE(ref.dump());
    testing::TempDir dir;
    const std::string out = dir.file("ppl.json");
    testing::RunResult r = run(fmt::format(
        "perplexity --model-path {} --text-file {} --max-length {} --stride {} {} --output {}",
        source_path(model), source_path(ref["text_file"]), ref["max_length"].get<int>(),
        ref["stride"].get<int>(), ref["add_bos"].get<bool>() ? "--add-bos" : "", out));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(out);
    nlohmann::json got = nlohmann::json::parse(in);
    EXPECT_EQ(got["tokens"], ref["tokens"]);
    EXPECT_EQ(got["windows"], ref["windows"]);
    EXPECT_EQ(got["scored_tokens"], ref["scored_tokens"]);
    const double nll = got["nll"], expected = ref["nll"];
    EXPECT_NEAR(nll, expected, tolerance * expected);
    EXPECT_NEAR(got["perplexity"].get<double>(), std::exp(nll), 1e-9 * std::exp(nll));
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

TEST(Perplexity, StrideLargerThanWindowIsAnError) {
  testing::RunResult r =
      run("perplexity --model-path " + source_path("tests/data/models/deepseek_v3_tiny") +
          " --text-file " + source_path("tests/data/perplexity/sample.txt") +
          " --max-length 16 --stride 32");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, ::testing::HasSubstr("--stride 32 is larger than --max-length 16"));
}

TEST(Perplexity, MissingTextFileIsNamed) {
  testing::RunResult r =
      run("perplexity --model-path " + source_path("tests/data/models/deepseek_v3_tiny") +
          " --text-file /nonexistent/text.txt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, ::testing::HasSubstr("/nonexistent/text.txt"));
}

}  // namespace
}  // namespace epserve
