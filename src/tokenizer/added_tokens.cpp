#include "tokenizer/tokenizer_parts.h"

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

namespace {

// Rust regex `\w`, which HF tokenizers tests single_word tokens' neighbours with.
bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  return unicode::set_contains(unicode::rust_word_chars(), cp);
}

char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  size_t j = i;
  return utf8_next(s, j);
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<const AddedToken*>& tokens) {
  tokens_ = tokens;
  nodes_.assign(1, Node{});
  for (int32_t t = 0; t < static_cast<int32_t>(tokens.size()); ++t) {
    const std::string& s = tokens[t]->content;
    if (s.empty()) continue;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    int32_t node = 0;
    for (char c : s) {
      auto b = static_cast<unsigned char>(c);
      auto it = nodes_[node].next.find(b);
      if (it == nodes_[node].next.end()) {
        nodes_.push_back(Node{});
        int32_t created = static_cast<int32_t>(nodes_.size()) - 1;
        nodes_[node].next.emplace(b, created);
        node = created;
      } else {
        node = it->second;
      }
    }
    if (nodes_[node].token < 0) nodes_[node].token = t;
  }
}

std::optional<std::pair<size_t, int32_t>> AddedTokenMatcher::longest_at(std::string_view text,
                                                                        size_t pos) const {
  int32_t node = 0;
  std::optional<std::pair<size_t, int32_t>> best;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = nodes_[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes_[node].next.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) best = std::make_pair(i + 1, nodes_[node].token);
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t start_offset = 0;
  if (!tokens_.empty()) {
    for (size_t pos = 0; pos < text.size(); ++pos) {
      if (!first_byte_[static_cast<unsigned char>(text[pos])]) continue;
      auto found = longest_at(text, pos);
      if (!found) continue;
      size_t start = pos, stop = found->first;
      const AddedToken& token = *tokens_[found->second];
      if (token.single_word) {
        bool start_space = start == 0 || !is_word_char(last_char(text.substr(0, start)));
        size_t k = stop;
        bool stop_space = stop == text.size() || !is_word_char(utf8_next(text, k));
        if (!start_space || !stop_space) {
          pos = stop - 1;  // HF drops the match and goes on after it
          continue;
        }
      }
      if (token.lstrip) {
        size_t s = start;
        while (s > start_offset) {
          size_t prev = s - 1;
          while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
          size_t k = prev;
          if (!python_isspace(utf8_next(text, k))) break;
          s = prev;
        }
        start = s;
      }
      if (token.rstrip) {
        while (stop < text.size()) {
          size_t k = stop;
          if (!python_isspace(utf8_next(text, k))) break;
          stop = k;
        }
      }
      if (start_offset < start) out.push_back(Segment{start_offset, start, -1});
      out.push_back(Segment{start, stop, token.id});
      start_offset = stop;
      pos = stop - 1;
    }
  }
  if (start_offset < text.size() || text.empty()) {
    out.push_back(Segment{start_offset, text.size(), -1});
  }
}

}  // namespace epserve::tokenizer
