// Pre-tokenizers of tokenizer.json: Split (regex or literal, every delimiter behaviour, invert),
// Digits, ByteLevel (optionally with the GPT-2 regex and a prefix space) and Sequence.
#include "core/error.h"
#include "tokenizer/tokenizer_parts.h"

namespace epserve::tokenizer {

namespace {

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Span {
  size_t begin, end;
  bool is_match;
};

// Applies a delimiter behaviour to the match/gap spans of one piece (HF NormalizedString::split).
void apply_behavior(const std::vector<Span>& spans, Behavior behavior, bool prefix_space,
                    std::vector<Piece>& out) {
  std::vector<std::pair<Span, bool>> splits;  // (span, remove)
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (const auto& s : spans) splits.push_back({s, false});
      break;
    case Behavior::Removed:
      for (const auto& s : spans) splits.push_back({s, s.is_match});
      break;
    case Behavior::Contiguous:
      for (const auto& s : spans) {
        if (s.is_match == previous_match && !splits.empty())
          splits.back().first.end = s.end;
        else
          splits.push_back({s, false});
        previous_match = s.is_match;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !splits.empty())
          splits.back().first.end = s.end;
        else
          splits.push_back({s, false});
        previous_match = s.is_match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !splits.empty()) {
          splits.back().first.begin = it->begin;
        } else {
          splits.push_back({*it, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(splits.begin(), splits.end());
      break;
  }
  bool first = true;
  for (const auto& [span, remove] : splits) {
    if (remove || span.end <= span.begin) continue;
    out.push_back(Piece{span.begin, span.end, prefix_space && first});
    first = false;
  }
}

class Split : public PreTokenizer {
 public:
  Split(std::string pattern, bool literal, Behavior behavior, bool invert,
        const std::string& origin)
      : literal_(literal), pattern_(pattern), behavior_(behavior), invert_(invert) {
    if (!literal) regex_.emplace(pattern, origin);
  }
  void split(std::string_view text, std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<Span> spans;
    for (const Piece& piece : pieces) {
      EPS_CHECK(!piece.prefix_space, "Split after ByteLevel(add_prefix_space) is not supported");
      std::string_view s = text.substr(piece.begin, piece.end - piece.begin);
      spans.clear();
      size_t prev = 0;
      auto on_match = [&](size_t b, size_t e) {
        if (prev != b) spans.push_back({piece.begin + prev, piece.begin + b, invert_});
        spans.push_back({piece.begin + b, piece.begin + e, !invert_});
        prev = e;
      };
      if (literal_) {
        for (size_t pos = 0; !pattern_.empty();) {
          size_t hit = s.find(pattern_, pos);
          if (hit == std::string_view::npos) break;
          on_match(hit, hit + pattern_.size());
          pos = hit + pattern_.size();
        }
      } else {
        regex_->find_all(s, on_match);
      }
      if (prev != s.size()) spans.push_back({piece.begin + prev, piece.end, invert_});
      apply_behavior(spans, behavior_, false, out);
    }
    pieces.swap(out);
  }

 private:
  bool literal_;
  std::string pattern_;
  std::optional<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelSplit : public PreTokenizer {
 public:
  ByteLevelSplit(bool add_prefix_space, bool use_regex, const std::string& origin)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) {
      regex_.emplace(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          origin);
    }
  }
  void split(std::string_view text, std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::string buffer;
    for (const Piece& piece : pieces) {
      std::string_view s = text.substr(piece.begin, piece.end - piece.begin);
      bool prefix = add_prefix_space_ && !(s.size() > 0 && s[0] == ' ');
      if (!regex_) {
        out.push_back(Piece{piece.begin, piece.end, prefix});
        continue;
      }
      // The regex sees the prefix space; offsets map back with the space at -1.
      std::string_view subject = s;
      if (prefix) {
        buffer.assign(" ");
        buffer.append(s);
        subject = buffer;
      }
      size_t shift = prefix ? 1 : 0;
      size_t prev = 0;
      auto emit = [&](size_t b, size_t e) {
        bool with_space = prefix && b == 0;
        size_t ob = piece.begin + (b == 0 ? 0 : b - shift);
        size_t oe = piece.begin + e - shift;
        out.push_back(Piece{ob, oe, with_space});
      };
      regex_->find_all(subject, [&](size_t b, size_t e) {
        if (prev != b) emit(prev, b);
        emit(b, e);
        prev = e;
      });
      if (prev != subject.size()) emit(prev, subject.size());
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

Behavior parse_behavior(const std::string& name, const std::string& origin) {
  if (name == "Removed") return Behavior::Removed;
  if (name == "Isolated") return Behavior::Isolated;
  if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::MergedWithNext;
  if (name == "Contiguous") return Behavior::Contiguous;
  EPS_THROW("{}: unknown Split behavior '{}'", origin, name);
}

void add_steps(const nlohmann::json& j, const std::string& origin, PreTokenizerChain& chain) {
  EPS_CHECK(j.is_object() && j.contains("type"), "{}: pre_tokenizer must be an object with a type",
            origin);
  std::string type = j["type"].get<std::string>();
  EPS_CHECK(!chain.byte_level, "{}: pre_tokenizer '{}' after ByteLevel is not supported", origin,
            type);
  if (type == "Sequence") {
    for (const auto& item : j.at("pretokenizers")) add_steps(item, origin, chain);
  } else if (type == "Split") {
    const auto& pattern = j.at("pattern");
    bool literal = pattern.contains("String");
    std::string text =
        literal ? pattern["String"].get<std::string>() : pattern.at("Regex").get<std::string>();
    chain.steps.push_back(std::make_unique<Split>(
        text, literal, parse_behavior(j.at("behavior").get<std::string>(), origin),
        j.value("invert", false), origin));
  } else if (type == "Digits") {
    bool individual = j.value("individual_digits", false);
    // HF: Isolated on each digit, or Contiguous runs of digits (char::is_numeric == \p{N}).
    chain.steps.push_back(std::make_unique<Split>(individual ? "\\p{N}" : "\\p{N}+", false,
                                                  Behavior::Isolated, false, origin));
  } else if (type == "ByteLevel") {
    chain.steps.push_back(std::make_unique<ByteLevelSplit>(j.value("add_prefix_space", true),
                                                           j.value("use_regex", true), origin));
    chain.byte_level = true;
  } else {
    EPS_THROW(
        "{}: pre_tokenizer type '{}' is not supported (supported: Sequence, Split, Digits, "
        "ByteLevel)",
        origin, type);
  }
}

}  // namespace

PreTokenizerChain make_pre_tokenizer(const nlohmann::json& j, const std::string& origin) {
  PreTokenizerChain chain;
  if (!j.is_null()) add_steps(j, origin, chain);
  return chain;
}

}  // namespace epserve::tokenizer
