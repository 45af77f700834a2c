// Internal building blocks of Tokenizer (not part of the public API): added-token matching,
// normalizers, pre-tokenizers and the two BPE merge rules (HF merges by pair rank, tiktoken merges
// by the rank of the merged bytes).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
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

// Open-addressing map from a (left id, right id) pair to (rank, merged id).
class PairMap {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t id = 0;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  void reserve(size_t n);
  void insert(uint64_t key, int32_t rank, int32_t id);
  const Entry* find(uint64_t key) const {
    size_t i = mix(key) & mask_;
    while (true) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }

 private:
  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

// Piece -> ids memo shared by threads (sharded, bounded), like HF's BPE word cache.
class PieceCache {
 public:
  bool lookup(std::string_view piece, std::vector<int32_t>& out) const;
  void store(std::string_view piece, const int32_t* ids, size_t n) const;
  static constexpr size_t kMaxPieceBytes = 64;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> map;
  };
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 8192;
  mutable std::array<Shard, kShards> shards_;
};

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
  std::unordered_map<std::string, int32_t> bytes_vocab_;  // byte-level: raw bytes -> id
  PairMap merges_;                                        // (a,b) -> (rank, new id)
  PieceCache cache_;
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
  PieceCache cache_;
};

}  // namespace epserve::tokenizer
