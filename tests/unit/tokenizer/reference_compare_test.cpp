// Token ids, decoded text and streaming output of our tokenizers against HF `tokenizers` and
// `tiktoken` on the committed corpus (tests/data/tokenizers/corpus.jsonl, 12,000 strings), and
// ids on text with characters of Unicode 15-16 (corpus_unicode16.jsonl, 2,000 strings), with the
// fixture tokenizers; expected values come from tools/reference/tokenizer/make_expected.py.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unicode/normalizer2.h>

#include <map>
#include <sstream>

#include "reference_test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {
namespace {

using testing::fixture_dir;
using testing::fnv1a;
using testing::join_ids;

struct Fixture {
  const char* name;
  const char* dir;
  bool nfc;                // the tokenizer NFC-normalizes, so decode(encode(s)) == NFC(s)
  size_t lines = 0;        // compare on the first `lines` corpus lines (0: all)
  bool round_trip = true;  // decode(encode(s)) == s holds (not with prefix spaces or NFKC)
};

const Fixture kFixtures[] = {
    {"deepseek_v3", "deepseek_v3", false},
    {"qwen2_5", "qwen2_5", true},
    {"qwen_tiktoken", "qwen_tiktoken", false},
    {"small_deepseek_v3", "small/deepseek_v3", false},
    {"small_qwen3", "small/qwen3", true},
    {"small_kimi_k2", "small/kimi_k2", false},
    // tokenizer.json features the families do not use (tools/reference/tokenizer/make_variants.py)
    {"variant_digits", "variants/digits", true, 3000, true},
    {"variant_gpt2", "variants/gpt2", false, 3000, false},
    {"variant_splits", "variants/splits", false, 3000, false},
    {"variant_added", "variants/added", false, 3000, false},
};

void PrintTo(const Fixture& f, std::ostream* os) {
  *os << f.name;
}

class ReferenceCompare : public ::testing::TestWithParam<Fixture> {};

// Each fixture is loaded once for the three tests (the real files take a second to parse).
const Tokenizer& load_fixture(const Fixture& f) {
  static std::map<std::string, Tokenizer> loaded;
  auto it = loaded.find(f.name);
  if (it == loaded.end()) {
    it = loaded.emplace(f.name, Tokenizer::load(fixture_dir() + "/" + f.dir)).first;
  }
  return it->second;
}

const std::vector<testing::CorpusLine>& corpus() {
  static const std::vector<testing::CorpusLine> lines = testing::load_corpus();
  return lines;
}

std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out.push_back(static_cast<char>(c));
  }
  return out;
}

std::string nfc(const std::string& s) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), sink, nullptr,
                   status);
  return out;
}

// Ids of every line of a corpus; `corpus_name` empty: the main corpus (the first f.lines lines),
// else corpus_<name>.jsonl against expected/<fixture>.<name>.encode.txt.
void check_encode(const Fixture& f, const std::string& corpus_name = "") {
  const Tokenizer& tok = load_fixture(f);
  std::vector<testing::CorpusLine> lines;
  std::string suffix;
  if (corpus_name.empty()) {
    const auto& all_lines = corpus();
    ASSERT_GE(all_lines.size(), 10000u);
    lines.assign(all_lines.begin(), all_lines.begin() + (f.lines ? f.lines : all_lines.size()));
  } else {
    lines = testing::load_corpus("corpus_" + corpus_name + ".jsonl");
    ASSERT_GE(lines.size(), 1000u);
    suffix = "." + corpus_name;
  }
  std::ifstream expected(fixture_dir() + "/expected/" + f.name + suffix + ".encode.txt");
  ASSERT_TRUE(expected.good()) << "missing expected file for " << f.name;
  size_t mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t count;
    std::string hash;
    ASSERT_TRUE(expected >> count >> hash) << "expected file shorter than the corpus";
    std::vector<int32_t> ids = tok.encode(lines[i].text);
    if (ids.size() != count || fnv1a(join_ids(ids)) != hash) {
      if (++mismatches <= 10) {
        ADD_FAILURE() << f.name << " corpus line " << i + 1 << " '" << escaped(lines[i].text)
                      << "': ours (" << ids.size() << " ids) " << join_ids(ids).substr(0, 300)
                      << "; reference has " << count
                      << " ids (tools/reference/tokenizer/make_expected.py --only " << f.name
                      << (corpus_name.empty() ? "" : " --corpus " + corpus_name) << " --show " << i
                      << ")";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << f.name;
}

void check_decode(const Fixture& f) {
  const Tokenizer& tok = load_fixture(f);
  std::ifstream expected(fixture_dir() + "/expected/" + f.name + ".decode.txt");
  ASSERT_TRUE(expected.good());
  std::string line;
  size_t cases = 0, mismatches = 0;
  while (std::getline(expected, line)) {
    std::istringstream in(line);
    std::string ids_text, hash_all, hash_skip;
    std::getline(in, ids_text, '\t');
    in >> hash_all >> hash_skip;
    std::vector<int32_t> ids;
    std::istringstream id_stream(ids_text);
    for (int32_t id; id_stream >> id;) ids.push_back(id);
    ++cases;
    for (bool skip : {false, true}) {
      std::string text = tok.decode(ids, skip);
      if (fnv1a(text) != (skip ? hash_skip : hash_all) && ++mismatches <= 10) {
        ADD_FAILURE() << f.name << " decode(" << ids_text << ", skip_special_tokens=" << skip
                      << ") = '" << escaped(text) << "' differs from the reference";
      }
      // The streaming detokenizer gives the same text.
      IncrementalDetokenizer stream(tok, skip);
      std::string streamed;
      for (int32_t id : ids) streamed += stream.step(id);
      streamed += stream.finish();
      EXPECT_EQ(streamed, text) << f.name << " ids " << ids_text;
    }
  }
  EXPECT_GE(cases, f.lines ? 400u : 1000u);
  EXPECT_EQ(mismatches, 0u);
}

void check_round_trip(const Fixture& f) {
  if (!f.round_trip) return;
  const Tokenizer& tok = load_fixture(f);
  size_t checked = 0;
  size_t index = 0;
  for (const auto& line : corpus()) {
    if (f.lines && index++ >= f.lines) break;
    if (!line.valid_utf8) continue;
    std::vector<int32_t> ids = tok.encode(line.text, false);
    std::string decoded = tok.decode(ids);
    std::string want = f.nfc ? nfc(line.text) : line.text;
    ASSERT_EQ(decoded, want) << f.name << " round trip of '" << escaped(line.text) << "'";
    IncrementalDetokenizer stream(tok, false);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = stream.step(id);
      ASSERT_TRUE(utf8_is_valid(piece));
      streamed += piece;
    }
    streamed += stream.finish();
    ASSERT_EQ(streamed, decoded) << f.name;
    ++checked;
  }
  EXPECT_GE(checked, f.lines ? f.lines * 9 / 10 : 10000u);
}

// One test per fixture (ctest runs each test in its own process; the real files take a second to
// load): ids on the corpus, decoded text and streaming of random id sequences, and round trips.
TEST_P(ReferenceCompare, MatchesReference) {
  check_encode(GetParam());
  check_decode(GetParam());
  check_round_trip(GetParam());
}

// Characters that Unicode 15.0-16.0 assigned split as in the reference libraries, whose `\p{..}`
// classes know Unicode 16.0 (PCRE2 10.42's own tables stop at Unicode 14).
TEST_P(ReferenceCompare, MatchesReferenceOnUnicode16Text) {
  check_encode(GetParam(), "unicode16");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceCompare, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace epserve::tokenizer
