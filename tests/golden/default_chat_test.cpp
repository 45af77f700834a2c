// The default model (models/default) answers chat messages as transformers does: for each
// conversation in tests/data/golden/default_chat.json (tools/train/golden_chat.py), epserve's
// chat template renders the same prompt text as transformers' apply_chat_template, the tokenizer
// gives the same ids, and greedy decoding (fp32 compute on the BF16 weights, both sides) gives
// the same tokens up to EOS or the token limit, and so the same answer text. Exact equality is
// sound here: the fixture script keeps only prompts whose every greedy step has a top-1/top-2
// logit margin of at least 1e-3, two orders above the ~1e-5 differences of fp32 sums.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "model/causal_lm.h"
#include "runtime/generator.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve {
namespace {

std::string source_path(const std::string& relative) {
  return std::string(EPSERVE_SOURCE_DIR) + "/" + relative;
}

nlohmann::ordered_json golden() {
  std::ifstream in(source_path("tests/data/golden/default_chat.json"));
  EXPECT_TRUE(in.good());
  return nlohmann::ordered_json::parse(in);
}

TEST(DefaultChat, TemplateAndTokensMatchTransformers) {
  const std::string model_dir = source_path("models/default");
  auto chat_template = tokenizer::ChatTemplate::load(model_dir);
  auto tok = tokenizer::Tokenizer::load(model_dir);
  nlohmann::ordered_json doc = golden();
  ASSERT_GE(doc["cases"].size(), 3u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["messages"].dump());
    std::string text = chat_template.render_json(c["messages"], true);
    EXPECT_EQ(text, c["prompt_text"].get<std::string>());
    EXPECT_EQ(tok.encode(text, false), c["prompt_ids"].get<std::vector<int32_t>>());
  }
}

TEST(DefaultChat, GreedyAnswersMatchTransformers) {
  const std::string model_dir = source_path("models/default");
  auto model = load_causal_lm(model_dir);
  auto tok = tokenizer::Tokenizer::load(model_dir);
  nlohmann::ordered_json doc = golden();
  std::vector<GenerateRequest> requests;
  for (const auto& c : doc["cases"]) {
    GenerateRequest r;
    r.input_ids = c["prompt_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = doc["max_new_tokens"].get<int64_t>();
    r.sampling.temperature = 0.0f;
    requests.push_back(r);
  }
  std::vector<GenerateResult> results = generate(*model, requests);
  ASSERT_EQ(results.size(), doc["cases"].size());
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& c = doc["cases"][i];
    SCOPED_TRACE(c["messages"].dump());
    EXPECT_EQ(results[i].output_ids, c["greedy_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(results[i].finish_reason, c["finish_reason"].get<std::string>());
    EXPECT_EQ(tok.decode(results[i].output_ids, true), c["answer"].get<std::string>());
  }
}

}  // namespace
}  // namespace epserve
