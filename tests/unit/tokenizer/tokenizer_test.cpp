// Tokenizer behaviour that the corpus comparison does not isolate: BOS/EOS rules, special-token
// queries, the streaming detokenizer on split UTF-8, Kimi's chunking, regex dialect translation,
// the embedded family tokenizers, and one-line errors for bad tokenizer files.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "reference_test_util.h"
#include "tokenizer/family_files.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace epserve::tokenizer {
namespace {

using testing::fixture_dir;
namespace fs = std::filesystem;

TEST(Tokenizer, SpecialTokensAndBos) {
  Tokenizer ds = Tokenizer::load(fixture_dir() + "/small/deepseek_v3");
  EXPECT_EQ(ds.vocab_size(), 1024);
  EXPECT_EQ(ds.bos_id(), 0);
  EXPECT_EQ(ds.eos_id(), 1);
  EXPECT_TRUE(ds.is_special(0));
  EXPECT_FALSE(ds.is_special(*ds.token_to_id("<｜User｜>")));  // special: false in DeepSeek's file
  EXPECT_EQ(ds.id_to_token(0), "<｜begin▁of▁sentence｜>");
  EXPECT_FALSE(ds.add_bos());  // add_bos_token: false, as DeepSeek-V3 ships it
  Tokenizer qwen = Tokenizer::load(fixture_dir() + "/small/qwen3");
  EXPECT_EQ(qwen.token_to_id("<|im_start|>"), 1);
  EXPECT_EQ(qwen.eos_id(), 2);
  EXPECT_EQ(qwen.encode("<|im_start|>x<|im_end|>").front(), 1);
  EXPECT_EQ(qwen.decode(qwen.encode("<|im_start|>hi<think>x</think>"), true), "hi<think>x</think>");
  Tokenizer kimi = Tokenizer::load(fixture_dir() + "/small/kimi_k2");
  EXPECT_EQ(kimi.vocab_size(), 1024);
  EXPECT_EQ(kimi.bos_id(), 766);
  EXPECT_EQ(kimi.token_to_id("<|im_end|>"), 768);
  EXPECT_EQ(kimi.id_to_token(766 + 5), "<|reserved_token_771|>");
}

TEST(Tokenizer, AddBosTokenAndTemplateProcessing) {
  auto dir = fs::temp_directory_path() / "epserve_bos_test";
  fs::create_directories(dir);
  fs::copy_file(fixture_dir() + "/small/deepseek_v3/tokenizer.json", dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": true, "add_eos_token": true,
             "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"})";
  Tokenizer t = Tokenizer::load(dir);
  auto ids = t.encode("hi");
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.encode("hi", false).size() + 2, ids.size());
  // Without add_bos_token in the config, a TemplateProcessing post-processor decides.
  std::ifstream in(fixture_dir() + "/small/deepseek_v3/tokenizer.json");
  auto j = nlohmann::json::parse(in);
  j["post_processor"] = nlohmann::json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}})");
  std::ofstream(dir / "tokenizer.json") << j.dump();
  std::ofstream(dir / "tokenizer_config.json") << "{}";
  EXPECT_EQ(Tokenizer::load(dir).encode("hi").front(), 0);
  EXPECT_NE(Tokenizer::load(dir).encode("hi", false).front(), 0);
  fs::remove_all(dir);
}

TEST(IncrementalDetokenizer, HoldsBackPartialCharacters) {
  Tokenizer qwen = Tokenizer::load(fixture_dir() + "/small/qwen3");
  std::string emoji = "👍🏽";  // 8 bytes: the small vocabulary splits it into byte tokens
  auto ids = qwen.encode(emoji);
  ASSERT_GT(ids.size(), 1u);
  IncrementalDetokenizer d(qwen, false);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    std::string piece = d.step(ids[i]);
    EXPECT_NE(piece, emoji);
    out += piece;
  }
  out += d.step(ids.back());
  EXPECT_EQ(out + d.finish(), emoji);
  // A byte that can never become valid is emitted at once as U+FFFD; a dangling lead byte at the
  // end becomes U+FFFD on finish(), as one-shot decoding gives.
  int32_t ff = *qwen.token_to_id("ÿ");  // byte 0xFF in the byte-level alphabet
  int32_t e4 = *qwen.token_to_id("ä");  // byte 0xE4, a 3-byte lead
  IncrementalDetokenizer d2(qwen, false);
  EXPECT_EQ(d2.step(ff), "\xEF\xBF\xBD");
  EXPECT_EQ(d2.step(e4), "");
  EXPECT_EQ(d2.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen.decode(std::vector<int32_t>{ff, e4}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // skip_special_tokens drops special ids from the stream.
  IncrementalDetokenizer d3(qwen, true);
  EXPECT_EQ(d3.step(2), "");
}

TEST(Tokenizer, KimiChunksLongRunsAs25000Characters) {
  Tokenizer kimi = Tokenizer::load(fixture_dir() + "/small/kimi_k2");
  std::string run(30000, 'a');
  auto whole = kimi.encode(run);
  auto first = kimi.encode(run.substr(0, 25000));
  auto rest = kimi.encode(run.substr(25000));
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(whole, first);
}

TEST(Regex, TranslatesWhitespaceAndClassIntersection) {
  EXPECT_EQ(translate_pattern("a\\sb"),
            "a[\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}-\\x{2029}"
            "\\x{202F}\\x{205F}\\x{3000}]b");
  // The intersection becomes a lookahead; Han is written out (PCRE2's \p{Han} is its Script
  // Extensions, wider than Script), L stays native with the letters PCRE2 10.42 does not know
  // added.
  std::string translated = translate_pattern("[\\p{L}&&[^\\p{Han}]]+");
  EXPECT_EQ(translated.rfind("(?:(?![\\x{2E80}-\\x{2E99}", 0), 0u) << translated;
  EXPECT_NE(translated.find(")[\\p{L}\\x{"), std::string::npos) << translated;
  Regex r("[\\p{L}&&[^\\p{Han}]]+|\\s+", "test");
  std::vector<std::string> found;
  std::string text = "abc中文 \u3000\u0085déf";
  r.find_all(text, [&](size_t b, size_t e) { found.push_back(text.substr(b, e - b)); });
  EXPECT_EQ(found, (std::vector<std::string>{"abc", " \u3000\u0085", "déf"}));
  EXPECT_THROW(Regex("(unclosed", "test"), Error);
}

TEST(FamilyFiles, EmbeddedSmallTokenizersLoad) {
  for (auto family :
       {TokenizerFamily::kDeepseekV3, TokenizerFamily::kQwen3, TokenizerFamily::kKimiK2}) {
    auto dir = fs::temp_directory_path() /
               ("epserve_family_" + std::string(tokenizer_family_name(family)));
    fs::create_directories(dir);
    write_family_tokenizer_files(family, dir);
    Tokenizer t = Tokenizer::load(dir);
    EXPECT_EQ(t.vocab_size(), kSmallTokenizerVocabSize);
    std::string text = "Hello, 世界! 123";
    EXPECT_EQ(t.decode(t.encode(text, false)), text);
    // Same bytes as the committed fixture.
    Tokenizer committed =
        Tokenizer::load(fixture_dir() + "/small/" + std::string(tokenizer_family_name(family)));
    EXPECT_EQ(t.encode(text), committed.encode(text));
    fs::remove_all(dir);
  }
  EXPECT_EQ(tokenizer_family_from_name("qwen3_moe"), TokenizerFamily::kQwen3);
  EXPECT_FALSE(tokenizer_family_from_name("llama").has_value());
}

std::string load_error(const fs::path& dir) {
  try {
    Tokenizer::load(dir);
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line error: " << msg;
    return msg;
  }
  return "";
}

TEST(Tokenizer, BadFilesGiveOneLineNamingFileAndProblem) {
  auto dir = fs::temp_directory_path() / "epserve_bad_tokenizer";
  fs::remove_all(dir);
  EXPECT_NE(load_error(dir).find("not a directory"), std::string::npos);
  fs::create_directories(dir);
  EXPECT_NE(load_error(dir).find("no tokenizer files"), std::string::npos);
  std::ofstream(dir / "tokenizer.json") << "{\"model\": ";
  std::string msg = load_error(dir);
  EXPECT_NE(msg.find("tokenizer.json: not valid JSON"), std::string::npos) << msg;
  std::ofstream(dir / "tokenizer.json") << R"({"model": {"type": "WordPiece", "vocab": {}}})";
  msg = load_error(dir);
  EXPECT_NE(msg.find("tokenizer.json: model type 'WordPiece' is not supported"), std::string::npos)
      << msg;
  std::ofstream(dir / "tokenizer.json")
      << R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}})";
  msg = load_error(dir);
  EXPECT_NE(msg.find("pre_tokenizer type 'Metaspace' is not supported"), std::string::npos) << msg;
  std::ofstream(dir / "tokenizer.json")
      << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
      "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}})";
  msg = load_error(dir);
  EXPECT_NE(msg.find("merge 0 'a b' uses a token that is not in the vocabulary"), std::string::npos)
      << msg;
  fs::remove(dir / "tokenizer.json");
  std::ofstream(dir / "tiktoken.model") << "YQ== 0\nnot-a-line\n";
  msg = load_error(dir);
  EXPECT_NE(msg.find("tiktoken.model: line 2 is not '<base64 token> <rank>'"), std::string::npos)
      << msg;
  std::ofstream(dir / "tokenizer_config.json") << R"({"tokenizer_class": "MysteryTokenizer"})";
  msg = load_error(dir);
  EXPECT_NE(msg.find("unknown tiktoken tokenizer_class 'MysteryTokenizer'"), std::string::npos)
      << msg;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace epserve::tokenizer

namespace epserve::tokenizer {
namespace {

TEST(Tokenizer, ConcurrentEncodesAgreeWithSerial) {
  Tokenizer tok = Tokenizer::load(testing::fixture_dir() + "/small/qwen3");
  auto corpus = testing::load_corpus();
  corpus.resize(2000);
  std::vector<std::vector<int32_t>> serial;
  for (const auto& line : corpus) serial.push_back(tok.encode(line.text));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size(); i += 2) {
        if (tok.encode(corpus[i].text) != serial[i]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace epserve::tokenizer
