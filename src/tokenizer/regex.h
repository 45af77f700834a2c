// Unicode regular expressions for pre-tokenizers, through PCRE2 (UTF + UCP, JIT-compiled).
// Patterns come in the dialects of Oniguruma (HF tokenizers) and Rust's regex/fancy-regex
// (tiktoken); translate_pattern rewrites the parts whose meaning differs in PCRE2: `\s`/`\S`
// become the Unicode White_Space set explicitly, and class intersections `[A&&[^B]]` (Kimi's
// pattern) become a lookahead in front of the class.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace epserve::tokenizer {

std::string translate_pattern(std::string_view pattern);

class Regex {
 public:
  // `origin` names where the pattern came from, for error messages.
  Regex(std::string_view pattern, std::string_view origin);
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
