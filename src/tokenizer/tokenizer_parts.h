// Internal building blocks of Tokenizer (not part of the public API): added-token matching,
// normalizers, pre-tokenizers and the two BPE merge rules (HF merges by pair rank, tiktoken merges
// by the rank of the merged bytes).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/regex.h"

namespace epserve::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// A piece of text: either plain text [begin, end) of the string it was found in, or an added token.
struct Segment {
  size_t begin = 0;
  size_t end = 0;
  int32_t token_id = -1;  // >= 0: an added token
};

// Finds added tokens in text, leftmost-longest (like HF's Aho-Corasick with LeftmostLongest),
// honouring lstrip / rstrip / single_word.
class AddedTokenMatcher {
 public:
  void build(const std::vector<const AddedToken*>& tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits text into segments; plain-text segments may be empty only if text is empty.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into tokens_
  };
  std::optional<std::pair<size_t, int32_t>> longest_at(std::string_view text, size_t pos) const;
  std::vector<Node> nodes_;
  std::vector<const AddedToken*> tokens_;
  bool first_byte_[256] = {};
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string_view text) const = 0;
};
// Builds the normalizer of tokenizer.json; nullptr for null. Unknown types throw.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& origin);

struct Piece {
  size_t begin = 0;
  size_t end = 0;
  bool prefix_space = false;  // a space that ByteLevel(add_prefix_space) put in front
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` (ranges of `text`) by their splits.
  virtual void split(std::string_view text, std::vector<Piece>& pieces) const = 0;
};

struct PreTokenizerChain {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  bool byte_level = false;  // the chain ends with ByteLevel: the model sees bytes
};
PreTokenizerChain make_pre_tokenizer(const nlohmann::json& j, const std::string& origin);

// HF BPE over byte-level (or character) symbols, merging by the rank of the pair.
class HfBpe {
 public:
  // vocab: token text (in the model's alphabet) -> id. merges in rank order.
  void init(std::unordered_map<std::string, int32_t> vocab,
            const std::vector<std::pair<std::string, std::string>>& merges, bool byte_level,
            bool ignore_merges, std::optional<int32_t> unk_id, const std::string& origin);
  void encode(std::string_view piece, std::vector<int32_t>& out) const;
  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int32_t> bytes_vocab_;              // byte-level: raw bytes -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, new id)
  int32_t byte_ids_[256] = {};
  bool byte_level_ = true;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
};

// tiktoken BPE: ranks of byte strings; merges the adjacent pair whose concatenation ranks lowest.
class RankBpe {
 public:
  void init(std::unordered_map<std::string, int32_t> ranks);
  void encode(std::string_view piece, std::vector<int32_t>& out) const;
  const std::unordered_map<std::string, int32_t>& ranks() const { return ranks_; }

 private:
  std::unordered_map<std::string, int32_t> ranks_;
};

}  // namespace epserve::tokenizer
