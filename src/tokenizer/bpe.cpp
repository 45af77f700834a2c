// The two BPE merge rules. Both merge, at each step, the lowest-ranked adjacent pair, leftmost
// first; HF ranks a pair by its line in `merges`, tiktoken by the rank of the merged bytes.
#include <algorithm>
#include <functional>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_parts.h"
#include "tokenizer/utf8.h"

namespace epserve::tokenizer {

namespace {

struct Symbol {
  int32_t id;      // HF: token id; tiktoken: unused until the end
  uint32_t begin;  // byte range in the piece
  uint32_t end;
  int32_t prev;
  int32_t next;
  uint32_t version;  // bumped when the symbol changes, to drop stale heap entries
};

struct Candidate {
  int32_t rank;
  int32_t left;
  uint32_t left_version;
  uint32_t right_version;
  int32_t merged_id;
  bool operator>(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};

// Runs the merge loop. rank_of(left, right, &merged_id) returns the rank of merging two adjacent
// symbols, or -1; the merged symbol takes merged_id.
template <typename RankOf>
void merge_all(std::vector<Symbol>& symbols, RankOf rank_of) {
  thread_local std::vector<Candidate> heap;  // a min-heap through push_heap/pop_heap
  heap.clear();
  const auto later = std::greater<Candidate>();
  auto push = [&](int32_t left) {
    int32_t right = symbols[left].next;
    if (right < 0) return;
    int32_t merged = -1;
    int32_t rank = rank_of(symbols[left], symbols[right], &merged);
    if (rank < 0) return;
    heap.push_back({rank, left, symbols[left].version, symbols[right].version, merged});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    if (left.version != c.left_version || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.version != c.right_version) continue;
    left.id = c.merged_id;
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.version = UINT32_MAX;  // dead
    right.end = right.begin;
    ++left.version;
    if (left.prev >= 0) push(left.prev);
    push(c.left);
  }
}

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

void HfBpe::init(std::unordered_map<std::string, int32_t> vocab,
                 const std::vector<std::pair<std::string, std::string>>& merges, bool byte_level,
                 bool ignore_merges, std::optional<int32_t> unk_id, const std::string& origin) {
  vocab_ = std::move(vocab);
  byte_level_ = byte_level;
  ignore_merges_ = ignore_merges;
  unk_id_ = unk_id;
  if (byte_level_) {
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      utf8_append(ch, byte_to_char(static_cast<unsigned char>(b)));
      auto it = vocab_.find(ch);
      byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }
    bytes_vocab_.reserve(vocab_.size());
    for (const auto& [text, id] : vocab_) {
      if (auto bytes = byte_level_decode(text)) bytes_vocab_.emplace(std::move(*bytes), id);
    }
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    EPS_CHECK(ia != vocab_.end() && ib != vocab_.end() && im != vocab_.end(),
              "{}: merge {} '{} {}' uses a token that is not in the vocabulary", origin, rank, a,
              b);
    merges_.insert(pair_key(ia->second, ib->second), static_cast<int32_t>(rank), im->second);
  }
}

void HfBpe::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const auto& table = byte_level_ ? bytes_vocab_ : vocab_;
    auto it = table.find(std::string(piece));
    if (it != table.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = piece.size() <= PieceCache::kMaxPieceBytes;
  if (cacheable && cache_.lookup(piece, out)) return;
  size_t first_out = out.size();
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto add = [&](int32_t id, uint32_t b, uint32_t e) {
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, b, e, index - 1, -1, 0});
    if (index > 0) symbols[index - 1].next = index;
  };
  if (byte_level_) {
    for (size_t i = 0; i < piece.size(); ++i) {
      int32_t id = byte_ids_[static_cast<unsigned char>(piece[i])];
      EPS_CHECK(id >= 0, "byte-level BPE vocabulary lacks byte {}",
                static_cast<int>(static_cast<unsigned char>(piece[i])));
      add(id, static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1));
    }
  } else {
    for (size_t i = 0; i < piece.size();) {
      size_t start = i;
      utf8_next(piece, i);
      auto it = vocab_.find(std::string(piece.substr(start, i - start)));
      if (it != vocab_.end()) {
        add(it->second, static_cast<uint32_t>(start), static_cast<uint32_t>(i));
      } else if (unk_id_) {
        add(*unk_id_, static_cast<uint32_t>(start), static_cast<uint32_t>(i));
      }
    }
  }
  if (symbols.empty()) return;
  merge_all(symbols, [&](const Symbol& l, const Symbol& r, int32_t* merged) {
    const PairMap::Entry* e = merges_.find(pair_key(l.id, r.id));
    if (!e) return -1;
    *merged = e->id;
    return e->rank;
  });
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
  if (cacheable) cache_.store(piece, out.data() + first_out, out.size() - first_out);
}

void RankBpe::init(std::unordered_map<std::string, int32_t> ranks) {
  ranks_ = std::move(ranks);
}

void RankBpe::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  thread_local std::string key;
  key.assign(piece);
  if (auto it = ranks_.find(key); it != ranks_.end()) {
    out.push_back(it->second);
    return;
  }
  bool cacheable = piece.size() <= PieceCache::kMaxPieceBytes;
  if (cacheable && cache_.lookup(piece, out)) return;
  size_t first_out = out.size();
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  for (size_t i = 0; i < piece.size(); ++i) {
    int32_t index = static_cast<int32_t>(i);
    symbols.push_back(
        Symbol{-1, static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1), index - 1, -1, 0});
    if (index > 0) symbols[index - 1].next = index;
  }
  auto rank_of = [&](const Symbol& l, const Symbol& r, int32_t* merged) {
    key.assign(piece.data() + l.begin, r.end - l.begin);
    auto it = ranks_.find(key);
    if (it == ranks_.end()) return -1;
    *merged = it->second;
    return it->second;
  };
  merge_all(symbols, rank_of);
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    key.assign(piece.data() + symbols[i].begin, symbols[i].end - symbols[i].begin);
    auto it = ranks_.find(key);
    EPS_CHECK(it != ranks_.end(), "tiktoken ranks lack a single byte {}",
              static_cast<int>(static_cast<unsigned char>(key[0])));
    out.push_back(it->second);
  }
  if (cacheable) cache_.store(piece, out.data() + first_out, out.size() - first_out);
}

void PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
}

void PairMap::insert(uint64_t key, int32_t rank, int32_t id) {
  if (slots_.empty()) reserve(16);
  size_t i = mix(key) & mask_;
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
  if (slots_[i].key == key) return;  // the first (lowest-rank) merge of a pair wins
  slots_[i] = Entry{key, rank, id};
}

namespace {
size_t shard_of(std::string_view piece) {
  return (std::hash<std::string_view>()(piece) >> 7) % 16;
}
}  // namespace

bool PieceCache::lookup(std::string_view piece, std::vector<int32_t>& out) const {
  Shard& s = shards_[shard_of(piece)];
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.map.find(piece);
  if (it == s.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void PieceCache::store(std::string_view piece, const int32_t* ids, size_t n) const {
  Shard& s = shards_[shard_of(piece)];
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.map.size() >= kMaxEntriesPerShard) s.map.clear();
  s.map.emplace(std::string(piece), std::vector<int32_t>(ids, ids + n));
}

}  // namespace epserve::tokenizer
