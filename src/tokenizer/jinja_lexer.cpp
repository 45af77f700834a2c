#include "tokenizer/jinja_lexer.h"

#include <cstring>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer::jinja {

namespace {

bool is_space_at(const std::string& s, size_t i, size_t* next) {
  size_t k = i;
  char32_t cp = utf8_next(s, k);
  if (!python_isspace(cp)) return false;
  *next = k;
  return true;
}

std::string rstrip_space(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t next;
    if (!is_space_at(s, start, &next)) break;
    end = start;
  }
  return s.substr(0, end);
}

bool all_space(const std::string& s, size_t from) {
  size_t i = from;
  while (i < s.size()) {
    size_t next;
    if (!is_space_at(s, i, &next)) return false;
    i = next;
  }
  return true;
}

int count_lines(const std::string& s, size_t from, size_t to) {
  int n = 0;
  for (size_t i = from; i < to; ++i) n += s[i] == '\n';
  return n;
}

// Position of the end marker of a tag whose inside starts at `pos`, skipping string literals.
size_t find_tag_end(const std::string& src, size_t pos, const char* marker, int line) {
  char quote = 0;
  for (size_t i = pos; i + 1 < src.size(); ++i) {
    char c = src[i];
    if (quote) {
      if (c == '\\')
        ++i;
      else if (c == quote)
        quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      continue;
    }
    if (c == marker[0] && src[i + 1] == marker[1]) return i;
  }
  EPS_THROW("template line {}: tag is not closed (missing '{}')", line, marker);
}

}  // namespace

std::vector<Chunk> split_chunks(const std::string& raw) {
  // Normalize newlines and drop one trailing newline (keep_trailing_newline=False).
  std::string src;
  src.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      src.push_back(raw[i]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();

  std::vector<Chunk> chunks;
  size_t pos = 0;
  int line = 1;
  while (pos <= src.size()) {
    size_t tag = std::string::npos;
    for (size_t i = src.find('{', pos); i != std::string::npos; i = src.find('{', i + 1)) {
      if (i + 1 < src.size() && (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#')) {
        tag = i;
        break;
      }
    }
    std::string text = src.substr(pos, tag == std::string::npos ? std::string::npos : tag - pos);
    int text_line = line;
    if (tag == std::string::npos) {
      if (!text.empty()) chunks.push_back({ChunkKind::kText, text, text_line});
      break;
    }
    line += count_lines(src, pos, tag);
    char type = src[tag + 1];
    char modifier = tag + 2 < src.size() ? src[tag + 2] : 0;
    bool line_starting = pos == 0 || src[pos - 1] == '\n';
    if (modifier == '-') {
      text = rstrip_space(text);
    } else if (modifier != '+' && (type == '%' || type == '#')) {
      size_t l = text.rfind('\n');
      l = l == std::string::npos ? 0 : l + 1;
      if ((l > 0 || line_starting) && l < text.size() && all_space(text, l)) text.resize(l);
    }
    if (!text.empty()) chunks.push_back({ChunkKind::kText, text, text_line});

    size_t inner = tag + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
    const char* marker = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    size_t end = type == '#' ? src.find("#}", inner) : find_tag_end(src, inner, marker, line);
    EPS_CHECK(end != std::string::npos, "template line {}: comment is not closed", line);
    bool strip_after = end > inner && src[end - 1] == '-';
    bool keep_newline = end > inner && src[end - 1] == '+';
    size_t inner_end = (strip_after || keep_newline) ? end - 1 : end;
    std::string inside = src.substr(inner, inner_end > inner ? inner_end - inner : 0);
    int tag_line = line;
    line += count_lines(src, tag, end + 2);
    pos = end + 2;

    // {% raw %} ... {% endraw %}: text taken verbatim.
    if (type == '%') {
      std::string word = inside;
      word.erase(0, word.find_first_not_of(" \t\n"));
      word.erase(word.find_last_not_of(" \t\n") + 1);
      if (word == "raw") {
        size_t close = src.find("endraw", pos);
        EPS_CHECK(close != std::string::npos, "template line {}: raw block is not closed",
                  tag_line);
        size_t open = src.rfind("{%", close);
        size_t finish = src.find("%}", close);
        EPS_CHECK(open != std::string::npos && finish != std::string::npos,
                  "template line {}: raw block is not closed", tag_line);
        std::string body = src.substr(pos, open - pos);
        if (src[open + 2] == '-') body = rstrip_space(body);
        chunks.push_back({ChunkKind::kText, body, line});
        line += count_lines(src, pos, finish + 2);
        pos = finish + 2;
        if (src[finish - 1] == '-') {
          size_t next;
          while (pos < src.size() && is_space_at(src, pos, &next)) {
            line += src[pos] == '\n';
            pos = next;
          }
        } else if (pos < src.size() && src[pos] == '\n') {
          ++pos;
          ++line;
        }
        continue;
      }
    }

    if (type == '{')
      chunks.push_back({ChunkKind::kExpression, inside, tag_line});
    else if (type == '%')
      chunks.push_back({ChunkKind::kStatement, inside, tag_line});

    if (strip_after) {
      size_t next;
      while (pos < src.size() && is_space_at(src, pos, &next)) {
        line += src[pos] == '\n';
        pos = next;
      }
    } else if (type != '{' && !keep_newline && pos < src.size() && src[pos] == '\n') {
      ++pos;  // trim_blocks
      ++line;
    }
    if (pos == src.size()) break;
  }
  return chunks;
}

namespace {

std::string decode_string_literal(const std::string& body, int line) {
  // Python "unicode-escape" decoding, which is what Jinja applies to string literals.
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    char e = body[++i];
    auto hex = [&](int digits) {
      EPS_CHECK(i + digits < body.size(), "template line {}: truncated escape", line);
      char32_t v = static_cast<char32_t>(std::stoul(body.substr(i + 1, digits), nullptr, 16));
      i += digits;
      utf8_append(out, v);
    };
    switch (e) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case '\n':
        break;
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0', n = 1;
          while (n < 3 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7') {
            v = v * 8 + (body[++i] - '0');
            ++n;
          }
          utf8_append(out, static_cast<char32_t>(v));
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

}  // namespace

std::vector<Tok> tokenize_expression(const std::string& s, int line) {
  std::vector<Tok> toks;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = i;
      while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
      toks.push_back({TokKind::kName, s.substr(start, i - start)});
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t start = i;
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
      bool is_float = false;
      if (i + 1 < s.size() && s[i] == '.' && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        is_float = true;
        ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      }
      if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        is_float = true;
        ++i;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      }
      std::string text = s.substr(start, i - start);
      std::erase(text, '_');
      Tok t{is_float ? TokKind::kFloat : TokKind::kInt, text};
      if (is_float)
        t.float_value = std::stod(text);
      else
        t.int_value = std::stoll(text);
      toks.push_back(t);
      continue;
    }
    if (c == '\'' || c == '"') {
      size_t start = ++i;
      while (i < s.size() && s[i] != c) i += s[i] == '\\' ? 2 : 1;
      EPS_CHECK(i < s.size(), "template line {}: unterminated string literal", line);
      toks.push_back({TokKind::kString, decode_string_literal(s.substr(start, i - start), line)});
      ++i;
      continue;
    }
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                 "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                 "]",  "{",  "}",  ",",  ".",  ":",  "|"};
    bool matched = false;
    for (const char* op : kOps) {
      size_t n = std::strlen(op);
      if (s.compare(i, n, op) == 0) {
        toks.push_back({TokKind::kOp, op});
        i += n;
        matched = true;
        break;
      }
    }
    EPS_CHECK(matched, "template line {}: unexpected character '{}'", line, c);
  }
  toks.push_back({TokKind::kEnd, ""});
  return toks;
}

}  // namespace epserve::tokenizer::jinja
