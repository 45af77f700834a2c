#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

namespace {

// Bounds of the second byte for a lead byte, per the Unicode "well-formed UTF-8" table.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

int sequence_length_for_lead(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

}  // namespace

size_t utf8_valid_sequence_length(std::string_view s, size_t i, size_t* maximal_subpart) {
  auto lead = static_cast<unsigned char>(s[i]);
  int n = sequence_length_for_lead(lead);
  if (n == 1) return 1;
  if (n == 0) {
    if (maximal_subpart) *maximal_subpart = 1;
    return 0;
  }
  size_t k = 1;
  for (; k < static_cast<size_t>(n); ++k) {
    if (i + k >= s.size()) break;
    auto b = static_cast<unsigned char>(s[i + k]);
    bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  if (k == static_cast<size_t>(n)) return k;
  if (maximal_subpart) *maximal_subpart = k;
  return 0;
}

bool utf8_is_incomplete_prefix(std::string_view s, size_t i) {
  auto lead = static_cast<unsigned char>(s[i]);
  int n = sequence_length_for_lead(lead);
  if (n <= 1) return false;
  size_t k = 1;
  for (; i + k < s.size(); ++k) {
    auto b = static_cast<unsigned char>(s[i + k]);
    bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return false;
  }
  return k < static_cast<size_t>(n);
}

bool utf8_is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_valid_sequence_length(s, i, nullptr);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_repair(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 1;
    size_t n = utf8_valid_sequence_length(s, i, &bad);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      utf8_append(out, kReplacementChar);
      i += bad;
    }
  }
  return out;
}

char32_t utf8_next(std::string_view s, size_t& i) {
  auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int n = sequence_length_for_lead(b0);
  char32_t cp = n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool python_isspace(char32_t cp) {
  // Characters with bidirectional type WS, B or S, or category Zs (CPython's
  // _PyUnicode_IsWhitespace).
  if (cp >= 0x09 && cp <= 0x0D) return true;
  if (cp >= 0x1C && cp <= 0x20) return true;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

const std::string& all_code_points_utf8() {
  static const std::string text = [] {
    std::string s;
    for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (cp < 0xD800 || cp > 0xDFFF) utf8_append(s, cp);
    }
    return s;
  }();
  return text;
}

}  // namespace epserve::tokenizer
