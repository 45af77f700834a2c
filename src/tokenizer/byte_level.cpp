#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<int, 512> to_byte{};  // alphabet code points are all < 512
  Tables() {
    to_byte.fill(-1);
    std::array<bool, 256> direct{};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      to_char[b] = direct[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_char[b]] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(unsigned char b) {
  return tables().to_char[b];
}

std::optional<unsigned char> char_to_byte(char32_t cp) {
  if (cp >= 512) return std::nullopt;
  int b = tables().to_byte[cp];
  if (b < 0) return std::nullopt;
  return static_cast<unsigned char>(b);
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    auto b = char_to_byte(utf8_next(token, i));
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
  }
  return out;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8_append(out, byte_to_char(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace epserve::tokenizer
