// UTF-8 helpers shared by the tokenizers, the detokenizer and the Jinja engine: decoding code
// points, repairing invalid input the way Python's bytes.decode("utf-8", "replace") and Rust's
// String::from_utf8_lossy do (one U+FFFD per maximal invalid subpart), and Python's str.isspace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace epserve::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not a valid
// complete sequence. `maximal_subpart` receives the number of bytes to replace with one U+FFFD
// (at least 1) when the sequence is invalid.
size_t utf8_valid_sequence_length(std::string_view s, size_t i, size_t* maximal_subpart);

// True when s[i..] is a proper prefix of some valid UTF-8 sequence (more bytes could complete it).
bool utf8_is_incomplete_prefix(std::string_view s, size_t i);

bool utf8_is_valid(std::string_view s);

// Replaces every invalid subpart with U+FFFD, as Python's decode(errors="replace") does.
std::string utf8_repair(std::string_view s);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
char32_t utf8_next(std::string_view s, size_t& i);

void utf8_append(std::string& out, char32_t cp);

size_t utf8_length(std::string_view s);  // number of code points (s valid)

// Python's str.isspace() for one code point.
bool python_isspace(char32_t cp);

// Every Unicode scalar value (all code points but the surrogates), in order, as UTF-8; built once.
// For probing what a regex or normalizer does with each code point.
const std::string& all_code_points_utf8();

}  // namespace epserve::tokenizer
