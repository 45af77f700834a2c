// Tokenizer: text <-> token ids exactly as the model was trained, for the two formats our model
// families ship:
//   - Hugging Face tokenizer.json byte-level BPE (Qwen3, DeepSeek-V3): normalizer, pre-tokenizer
//     sequence (Split regexes, Digits, ByteLevel), merges by rank, added/special tokens, and
//     add_bos_token / add_eos_token from tokenizer_config.json;
//   - tiktoken files (Kimi-K2's tiktoken.model, Qwen's qwen.tiktoken): base64 token + rank per
//     line, with the split pattern and special tokens that the model's tokenizer code declares.
// Ids match HF `tokenizers` / `tiktoken` (tests/unit/tokenizer compare them on a corpus).
// Invalid UTF-8 input is first repaired with one U+FFFD per maximal invalid subpart, as Python's
// bytes.decode("utf-8", "replace") does. A Tokenizer is immutable and safe to share across threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace epserve::tokenizer {

enum class TokenizerFormat { kHfBpe, kTiktoken };

class Tokenizer {
 public:
  // Reads a model directory: tokenizer.json (+ tokenizer_config.json), or a tiktoken file
  // (tiktoken.model / *.tiktoken) with tokenizer_config.json. Errors name the file and problem.
  static Tokenizer load(const std::filesystem::path& model_dir);

  // From the contents of tokenizer.json and tokenizer_config.json ("" when absent).
  static Tokenizer from_hf_json(std::string_view tokenizer_json, std::string_view config_json,
                                const std::string& origin = "tokenizer.json");

  // A tiktoken vocabulary with the pattern and special tokens its model code declares.
  struct TiktokenSpec {
    std::string pattern;  // split regex (fancy-regex dialect)
    std::vector<std::pair<std::string, int32_t>> special_tokens;
    std::optional<std::string> bos_token, eos_token;
    bool kimi_chunking = false;  // Kimi's encode: 400k-char chunks, 25k same-space-class runs
  };
  static Tokenizer from_tiktoken(std::string_view tiktoken_file_contents, const TiktokenSpec& spec,
                                 const std::string& origin = "tiktoken.model");

  // Token ids of text. add_special_tokens adds BOS/EOS as tokenizer_config.json asks.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // Text of ids; invalid byte sequences become U+FFFD as in HF / tiktoken decoding. Ids outside
  // the vocabulary are skipped (as HF does).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The bytes one token contributes to decoded text (before UTF-8 repair); empty when skipped.
  std::string_view token_bytes(int32_t id) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;  // vocab spelling
  std::optional<std::string> id_to_token(int32_t id) const;
  int32_t vocab_size() const;  // highest id + 1, added tokens included
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<std::string> bos_token() const;
  std::optional<std::string> eos_token() const;
  bool is_special(int32_t id) const;  // skipped by decode(skip_special_tokens = true)
  bool add_bos() const;
  TokenizerFormat format() const;

  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

// Text of a token stream as it arrives, for streaming responses: feed ids one at a time and get
// the text they complete. Never emits part of a UTF-8 character; bytes that can no longer become
// valid are emitted as U+FFFD at once. The concatenation of every step() and finish() equals
// Tokenizer::decode of all ids.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);
  std::string step(int32_t id);
  // Emits what is still held back (an unfinished UTF-8 sequence becomes U+FFFD).
  std::string finish();

 private:
  Tokenizer tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace epserve::tokenizer
