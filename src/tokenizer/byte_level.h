// GPT-2 byte-level alphabet: every byte maps to one printable code point (bytes_to_unicode), so
// byte-level BPE vocabularies are stored as text. Used to read tokenizer.json vocabularies into
// raw bytes and to decode tokens back to bytes.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace epserve::tokenizer {

// The code point that stands for byte b.
char32_t byte_to_char(unsigned char b);

// The byte a code point stands for, if it is one of the 256 alphabet characters.
std::optional<unsigned char> char_to_byte(char32_t cp);

// Maps each character of a byte-level token to its byte; nullopt if some character is not in the
// alphabet (HF's ByteLevel decoder then keeps the token's own UTF-8 bytes).
std::optional<std::string> byte_level_decode(std::string_view token);

std::string byte_level_encode(std::string_view bytes);

}  // namespace epserve::tokenizer
