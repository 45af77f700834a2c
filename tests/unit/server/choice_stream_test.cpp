// A choice's text from token outputs: the detokenized stream equals decoding all ids, stop
// strings end it, the stop/EOS token is hidden, counts and finish reasons are SGLang's.
#include "server/choice_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace epserve {
namespace {

const tokenizer::Tokenizer& tok() {
  static tokenizer::Tokenizer t = tokenizer::Tokenizer::load(std::string(EPSERVE_SOURCE_DIR) +
                                                             "/tests/data/models/qwen3_moe_tiny");
  return t;
}

TokenOutput output(std::vector<int32_t> ids, bool finished = false,
                   const std::string& reason = "") {
  TokenOutput out;
  out.rid = "r";
  out.token_ids = std::move(ids);
  out.prompt_tokens = 5;
  out.finished = finished;
  out.finish_reason = reason;
  return out;
}

std::string run(ChoiceStream& c, const std::vector<int32_t>& ids, size_t per_output,
                const std::string& final_reason = "length", int32_t matched = -1) {
  std::string text;
  for (size_t i = 0; i < ids.size(); i += per_output) {
    std::vector<int32_t> chunk(ids.begin() + i, ids.begin() + std::min(ids.size(), i + per_output));
    bool last = i + per_output >= ids.size();
    TokenOutput out = output(chunk, last, last ? final_reason : "");
    if (last) out.matched_stop_token = matched;
    text += c.apply(out).text;
  }
  return text;
}

TEST(ChoiceStream, StreamedTextEqualsDecode) {
  std::vector<int32_t> ids = tok().encode("Hello wörld, 你好! The end.", false);
  for (size_t per : {1, 2, 5}) {
    ChoiceStream c(tok(), ChoiceOptions{{}, false, true, 64});
    std::string text = run(c, ids, per);
    EXPECT_EQ(text, tok().decode(ids, true)) << per;
    EXPECT_EQ(c.text(), text);
    EXPECT_EQ(c.output_ids(), ids);
    EXPECT_EQ(c.completion_tokens(), static_cast<int64_t>(ids.size()));
    EXPECT_EQ(c.prompt_tokens(), 5);
    EXPECT_EQ(c.finish_reason(), "length");
    EXPECT_EQ(c.sglang_finish_reason(), (nlohmann::json{{"type", "length"}, {"length", 64}}));
    EXPECT_TRUE(c.matched_stop().is_null());
  }
}

TEST(ChoiceStream, StopStringEndsTheChoice) {
  std::vector<int32_t> ids = tok().encode("one two three four five", false);
  ChoiceStream c(tok(), ChoiceOptions{{" three"}, false, true, 64});
  std::string text;
  size_t used = 0;
  for (int32_t id : ids) {
    ChoiceUpdate u = c.apply(output({id}));
    text += u.text;
    ++used;
    EXPECT_EQ(u.text.find("three"), std::string::npos);
    if (u.finished) break;
  }
  EXPECT_TRUE(c.finished());
  EXPECT_TRUE(c.stop_string_hit());
  EXPECT_EQ(text, "one two");
  EXPECT_EQ(c.text(), "one two");
  EXPECT_EQ(c.finish_reason(), "stop");
  EXPECT_EQ(c.matched_stop(), " three");
  EXPECT_EQ(c.output_ids().size(), used);
  EXPECT_LT(used, ids.size());
  // Outputs after the end change nothing.
  EXPECT_TRUE(c.apply(output({ids.back()})).text.empty());
  EXPECT_EQ(c.output_ids().size(), used);
}

TEST(ChoiceStream, StopTokenIsCountedButNotShown) {
  const int32_t im_end = *tok().token_to_id("<|im_end|>");
  std::vector<int32_t> ids = tok().encode("ok", false);
  ids.push_back(im_end);
  ChoiceStream hidden(tok(), ChoiceOptions{{}, false, false, 64});
  EXPECT_EQ(run(hidden, ids, 1, "stop", im_end), "ok");
  EXPECT_EQ(hidden.output_ids().back(), im_end);
  EXPECT_EQ(hidden.matched_stop(), im_end);
  EXPECT_EQ(hidden.sglang_finish_reason(), (nlohmann::json{{"type", "stop"}, {"matched", im_end}}));
  ChoiceStream kept(tok(), ChoiceOptions{{}, true, false, 64});
  EXPECT_EQ(run(kept, ids, 1, "stop", im_end), "ok<|im_end|>");
}

TEST(ChoiceStream, LogprobsAndErrors) {
  ChoiceStream c(tok(), ChoiceOptions{{}, false, true, 8});
  TokenOutput first = output({10, 11});
  first.logprobs = {-0.5f, -1.5f};
  first.top_logprobs = {{{10, -0.5f}, {12, -2.0f}}, {{11, -1.5f}}};
  first.input_logprobs = {0.0f, -3.0f};
  first.cached_tokens = 2;
  ChoiceUpdate u = c.apply(first);
  ASSERT_EQ(u.logprobs.size(), 2u);
  EXPECT_EQ(u.logprobs[0].top.size(), 2u);
  EXPECT_EQ(c.cached_tokens(), 2);
  EXPECT_EQ(c.input_logprobs().size(), 2u);
  TokenOutput failed = output({}, true, "abort");
  failed.error = "no room";
  c.apply(failed, 0);
  EXPECT_EQ(c.finish_reason(), "abort");
  EXPECT_EQ(c.error(), "no room");
  EXPECT_EQ(c.error_status(), 400);
  EXPECT_EQ(c.sglang_finish_reason()["type"], "abort");
  EXPECT_EQ(c.logprobs().size(), 2u);
  EXPECT_TRUE(c.failed());
}

TEST(ChoiceStream, AbortRequestIsAFinishNotAnError) {
  ChoiceStream c(tok(), ChoiceOptions{{}, false, true, 8});
  c.apply(output({10, 11}));
  c.apply(output({}, true, "abort"));
  EXPECT_EQ(c.finish_reason(), "abort");
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(c.completion_tokens(), 2);
  nlohmann::json expected = {
      {"type", "abort"}, {"message", "Aborted"}, {"status_code", nullptr}, {"err_type", nullptr}};
  EXPECT_EQ(c.sglang_finish_reason(), expected);
}

}  // namespace
}  // namespace epserve
