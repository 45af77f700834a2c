// Internal state of a Tokenizer, filled by the tokenizer.json and tiktoken loaders.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_parts.h"

namespace epserve::tokenizer {

enum class TokenKind : uint8_t { kNone, kNormal, kSpecial };

struct Tokenizer::Impl {
  TokenizerFormat format = TokenizerFormat::kHfBpe;
  std::string origin;

  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // added tokens matched before normalization
  AddedTokenMatcher normalized_matcher;  // added tokens matched after it

  std::unique_ptr<Normalizer> normalizer;
  PreTokenizerChain pre_tokenizer;
  HfBpe hf_bpe;

  std::optional<Regex> tiktoken_regex;
  RankBpe rank_bpe;
  bool kimi_chunking = false;

  std::vector<int32_t> prefix_ids;  // added with add_special_tokens
  std::vector<int32_t> suffix_ids;
  std::optional<int32_t> bos_id, eos_id;
  std::optional<std::string> bos_token, eos_token;

  std::vector<std::string> decoded;   // bytes each id decodes to
  std::vector<std::string> spelling;  // each id's vocabulary spelling
  std::vector<TokenKind> kind;
  std::unordered_map<std::string, int32_t> by_spelling;

  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_hf(std::string_view text, std::vector<int32_t>& out) const;
  void encode_tiktoken(std::string_view text, std::vector<int32_t>& out) const;
  void set_token(int32_t id, std::string spelling_text, std::string bytes, TokenKind k);
};

// "bos_token" etc. in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key);

}  // namespace epserve::tokenizer
