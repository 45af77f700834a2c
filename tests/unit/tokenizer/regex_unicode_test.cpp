// `\p{..}`, `\s` and classes built from them match the code points that HF tokenizers and tiktoken
// match (Unicode 16.0), not those of PCRE2's own tables (Unicode 14 in PCRE2 10.42), over every
// code point, and the normalizers give HF's output (its Unicode 9.0 tables, not ICU's Unicode 15)
// on every code point and on marks; expected values from
// tools/reference/tokenizer/probe_unicode.py.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "reference_test_util.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {
namespace {

using testing::fixture_dir;
using testing::fnv1a;

struct MatchedSet {
  size_t count = 0;
  std::string ranges;  // "first-last," in hex, as probe_unicode.py writes them
};

// The code points a class matches, from the runs of `cls+` over every code point (a class or an
// escape translates to one class).
MatchedSet matched_set(const std::string& cls, PropertyForm form) {
  Regex regex(translate_pattern(cls, form) + "+", cls, false);
  const std::string& text = all_code_points_utf8();
  MatchedSet out;
  regex.find_all(text, [&](size_t begin, size_t end) {
    size_t i = begin;
    char32_t first = utf8_next(text, i), last = first;
    while (i < end) last = utf8_next(text, i);
    // Runs over the surrogate gap count without the surrogates, as the probe writes them.
    uint32_t lo = first, hi = last;
    auto add = [&](uint32_t a, uint32_t b) {
      out.ranges += fmt::format("{:x}-{:x},", a, b);
      out.count += b - a + 1;
    };
    if (lo < 0xD800 && hi > 0xDFFF) {
      add(lo, 0xD7FF);
      add(0xE000, hi);
    } else {
      add(lo, hi);
    }
  });
  return out;
}

TEST(Regex, ClassesMatchReferenceOnEveryCodePoint) {
  std::ifstream in(fixture_dir() + "/expected/unicode_classes.txt");
  ASSERT_TRUE(in.good());
  size_t checked = 0;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string cls, hash;
    size_t count;
    ASSERT_TRUE(std::getline(fields, cls, '\t') && fields >> count >> hash) << line;
    // Native PCRE2 properties with the missing code points added (what tokenizers use on text
    // with such code points), and every property written out as ranges: both must be the
    // reference's set.
    for (PropertyForm form : {PropertyForm::kNativePlusMissing, PropertyForm::kRanges}) {
      MatchedSet ours = matched_set(cls, form);
      const char* name = form == PropertyForm::kRanges ? " (ranges)" : " (native + missing)";
      EXPECT_EQ(ours.count, count) << cls << name;
      EXPECT_EQ(fnv1a(ours.ranges), hash) << cls << name;
    }
    ++checked;
  }
  EXPECT_GE(checked, 20u);
}

TEST(Normalizers, MatchReferenceOnEveryCodePointAndMark) {
  std::vector<std::string> texts;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    texts.emplace_back();
    utf8_append(texts.back(), cp);
  }
  std::vector<std::string> marks;
  const unicode::CodePointSet mark_set = *unicode::property_set("M");
  for (const auto& r : mark_set) {
    for (char32_t cp = r.first; cp <= r.last; ++cp) {
      marks.emplace_back();
      utf8_append(marks.back(), cp);
    }
  }
  for (const auto& m : marks) texts.push_back("x" + m + "\u0334");
  for (const auto& m : marks) texts.push_back("a" + m);
  std::ifstream in(fixture_dir() + "/expected/unicode_normalizers.txt");
  ASSERT_TRUE(in.good());
  size_t checked = 0;
  for (std::string form, hash; in >> form;) {
    size_t count;
    ASSERT_TRUE(in >> count >> hash);
    ASSERT_EQ(texts.size(), count) << form;
    auto normalizer = make_normalizer(nlohmann::json{{"type", form}}, "test");
    std::string joined;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (i) joined.push_back('\0');
      joined += normalizer->normalize(texts[i]);
    }
    EXPECT_EQ(fnv1a(joined), hash) << form;
    ++checked;
  }
  EXPECT_EQ(checked, 4u);
}

// A few characters by name, so a failure above has readable examples.
TEST(Regex, KnowsUnicode16Characters) {
  auto matches = [](const std::string& cls, const std::string& text) {
    Regex regex("^" + cls + "$", "test");
    bool found = false;
    regex.find_all(text, [&](size_t, size_t) { found = true; });
    return found;
  };
  EXPECT_TRUE(matches("\\p{S}", "🩷"));              // U+1FA77 pink heart, Unicode 15.0
  EXPECT_TRUE(matches("[^\\s\\p{L}\\p{N}]", "🫩"));  // U+1FAE9 face with bags under eyes, 16.0
  EXPECT_TRUE(matches("\\p{N}", "\U0001E4F1"));        // Nag Mundari digit one, 15.0
  EXPECT_TRUE(matches("\\p{L}", "\U00010D4A"));        // Garay letter, 16.0
  EXPECT_TRUE(matches("\\p{Han}", "\U00031350"));      // CJK Extension H, 15.0
  EXPECT_TRUE(matches("\\p{Han}", "\U0002EBF0"));      // CJK Extension I, 15.1
  EXPECT_TRUE(matches("\\p{M}", "\u0897"));            // Arabic pepet, 16.0
  EXPECT_TRUE(matches("\\p{P}", "\u1B4E"));            // Balinese inverted carik siki, 16.0
  EXPECT_FALSE(matches("\\p{Han}", "\u3001"));         // ideographic comma: script Common
  EXPECT_FALSE(matches("\\p{L}", "\U0001FAEA"));       // unassigned in Unicode 16
  EXPECT_TRUE(matches("\\P{L}", "\U00010D4A") == false);
}

}  // namespace
}  // namespace epserve::tokenizer
