#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return std::nullopt;
}

void Tokenizer::Impl::set_token(int32_t id, std::string spelling_text, std::string bytes,
                                TokenKind k) {
  if (id >= static_cast<int32_t>(kind.size())) {
    kind.resize(id + 1, TokenKind::kNone);
    decoded.resize(id + 1);
    spelling.resize(id + 1);
  }
  by_spelling[spelling_text] = id;
  spelling[id] = std::move(spelling_text);
  decoded[id] = std::move(bytes);
  kind[id] = k;
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Piece> pieces{Piece{0, text.size(), false}};
  for (const auto& step : pre_tokenizer.steps) step->split(text, pieces);
  std::string buffer;
  for (const Piece& p : pieces) {
    std::string_view s = text.substr(p.begin, p.end - p.begin);
    if (p.prefix_space) {
      buffer.assign(" ");
      buffer.append(s);
      s = buffer;
    }
    hf_bpe.encode(s, out);
  }
}

void Tokenizer::Impl::encode_hf(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Segment> raw;
  raw_matcher.split(text, raw);
  std::vector<Segment> inner;
  std::string normalized;
  for (const Segment& seg : raw) {
    if (seg.token_id >= 0) {
      out.push_back(seg.token_id);
      continue;
    }
    std::string_view part = text.substr(seg.begin, seg.end - seg.begin);
    if (normalizer) {
      normalized = normalizer->normalize(part);
      part = normalized;
    }
    if (normalized_matcher.empty()) {
      encode_text(part, out);
      continue;
    }
    inner.clear();
    normalized_matcher.split(part, inner);
    for (const Segment& s : inner) {
      if (s.token_id >= 0)
        out.push_back(s.token_id);
      else
        encode_text(part.substr(s.begin, s.end - s.begin), out);
    }
  }
}

namespace {

// Kimi's encode(): 400,000-character chunks, each cut so that no run of whitespace or of
// non-whitespace (Python str.isspace) is longer than 25,000 characters.
std::vector<std::string_view> kimi_chunks(std::string_view text) {
  constexpr size_t kMaxChars = 400000;
  constexpr size_t kMaxRun = 25000;
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size() || (pos == 0 && text.empty())) {
    size_t end = pos, chars = 0;
    while (end < text.size() && chars < kMaxChars) {
      utf8_next(text, end);
      ++chars;
    }
    std::string_view chunk = text.substr(pos, end - pos);
    size_t slice_start = 0, run = 0, i = 0;
    bool run_is_space = false;
    if (!chunk.empty()) {
      size_t k = 0;
      run_is_space = python_isspace(utf8_next(chunk, k));
    }
    while (i < chunk.size()) {
      size_t at = i;
      bool space = python_isspace(utf8_next(chunk, i));
      if (space != run_is_space) {
        run = 1;
        run_is_space = space;
      } else if (++run > kMaxRun) {
        out.push_back(chunk.substr(slice_start, at - slice_start));
        slice_start = at;
        run = 1;
      }
    }
    out.push_back(chunk.substr(slice_start));
    if (text.empty()) break;
    pos = end;
  }
  return out;
}

}  // namespace

void Tokenizer::Impl::encode_tiktoken(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> chunks;
  if (kimi_chunking)
    chunks = kimi_chunks(text);
  else
    chunks.push_back(text);
  std::vector<Segment> segments;
  std::string piece;
  for (std::string_view chunk : chunks) {
    segments.clear();
    raw_matcher.split(chunk, segments);
    for (const Segment& seg : segments) {
      if (seg.token_id >= 0) {
        out.push_back(seg.token_id);
        continue;
      }
      std::string_view part = chunk.substr(seg.begin, seg.end - seg.begin);
      tiktoken_regex->find_all(
          part, [&](size_t b, size_t e) { rank_bpe.encode(part.substr(b, e - b), out); });
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!utf8_is_valid(text)) {
    repaired = utf8_repair(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = impl_->prefix_ids;
  if (impl_->format == TokenizerFormat::kHfBpe)
    impl_->encode_hf(text, ids);
  else
    impl_->encode_tiktoken(text, ids);
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->kind.size())) return {};
  return impl_->decoded[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(impl_->kind.size())) continue;
    TokenKind k = impl_->kind[id];
    if (k == TokenKind::kNone) continue;
    if (skip_special_tokens && k == TokenKind::kSpecial) continue;
    bytes += impl_->decoded[id];
  }
  return utf8_is_valid(bytes) ? bytes : utf8_repair(bytes);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->by_spelling.find(std::string(token));
  if (it == impl_->by_spelling.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(impl_->kind.size())) return std::nullopt;
  if (impl_->kind[id] == TokenKind::kNone) return std::nullopt;
  return impl_->spelling[id];
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->kind.size());
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos_id;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos_id;
}
std::optional<std::string> Tokenizer::bos_token() const {
  return impl_->bos_token;
}
std::optional<std::string> Tokenizer::eos_token() const {
  return impl_->eos_token;
}
TokenizerFormat Tokenizer::format() const {
  return impl_->format;
}

bool Tokenizer::add_bos() const {
  return !impl_->prefix_ids.empty() && impl_->bos_id && impl_->prefix_ids[0] == *impl_->bos_id;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(impl_->kind.size()) &&
         impl_->kind[id] == TokenKind::kSpecial;
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDetokenizer::step(int32_t id) {
  if (skip_special_tokens_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  // Emit everything except a trailing sequence that more bytes could still complete.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    if (static_cast<unsigned char>(pending_[i]) < 0x80) {
      out.push_back(pending_[i]);
      ++i;
      continue;
    }
    size_t bad = 1;
    size_t n = utf8_valid_sequence_length(pending_, i, &bad);
    if (n > 0) {
      out.append(pending_, i, n);
      i += n;
    } else if (utf8_is_incomplete_prefix(pending_, i)) {
      break;
    } else {
      utf8_append(out, kReplacementChar);
      i += bad;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string IncrementalDetokenizer::finish() {
  std::string out = utf8_repair(pending_);
  pending_.clear();
  return out;
}

}  // namespace epserve::tokenizer
