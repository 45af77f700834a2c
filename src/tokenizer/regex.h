// Unicode regular expressions for pre-tokenizers, through PCRE2 (UTF + UCP, JIT-compiled).
// Patterns come in the dialects of Oniguruma (HF tokenizers) and Rust's regex/fancy-regex
// (tiktoken); translate_pattern rewrites the parts whose meaning differs in PCRE2: `\s`/`\S`
// become the Unicode White_Space set, `\d` and `\p{..}`/`\P{..}` of a general category or script
// match the sets of the Unicode version the reference libraries use (Unicode 16.0,
// unicode_tables.h; PCRE2's own tables are those of its release, Unicode 14 in 10.42), and class
// intersections `[A&&[^B]]` (Kimi's pattern) become a lookahead in front of the class.
// regex_translate.cpp says how the sets are written; a Regex compiles the exact form and, when
// that adds code points to PCRE2's items, a form without them for text that has none of them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/unicode_tables.h"

namespace epserve::tokenizer {

// How translate_pattern writes a `\p{..}` item (or `\d`) whose set in PCRE2's own tables is a
// subset of the reference's (otherwise the item is written out as ranges in every form).
enum class PropertyForm {
  kNativePlusMissing,  // PCRE2's item plus the code points it lacks: exact
  kNativeOnly,         // PCRE2's item alone: exact on text with none of the lacking code points
  kRanges,             // every item as ranges: exact, matches 2-3x slower
};

// `missing` (optional) receives the code points that PCRE2's native items lack.
std::string translate_pattern(std::string_view pattern,
                              PropertyForm form = PropertyForm::kNativePlusMissing,
                              unicode::CodePointSet* missing = nullptr);

// The code points PCRE2's own tables match with a class item such as `\p{L}` (surrogates left
// out), measured once per item; nullopt when PCRE2 does not know the item.
std::optional<unicode::CodePointSet> pcre2_native_set(std::string_view item);

class Regex {
 public:
  // `origin` names where the pattern came from, for error messages. `translate` false compiles
  // the pattern as PCRE2 reads it.
  Regex(std::string_view pattern, std::string_view origin, bool translate = true);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Calls on_match(start, end) for each non-overlapping match, left to right (byte offsets).
  // `text` must be valid UTF-8. An empty match advances by one character, as Rust's find_iter does.
  void find_all(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
};

}  // namespace epserve::tokenizer
