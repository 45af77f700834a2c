// The small trained tokenizer of each model family (exactly 1024 ids), embedded in the binary so
// that `epserve make-model` can write tokenizer files of the model's family from any directory.
// The files are tests/data/tokenizers/small/<family>/ (trained by
// tools/reference/tokenizer/train_small.py with HF tokenizers):
//   deepseek_v3  tokenizer.json, tokenizer_config.json (DeepSeek-V3.1 chat template);
//                <｜begin▁of▁sentence｜> = 0 (bos), <｜end▁of▁sentence｜> = 1 (eos)
//   qwen3        tokenizer.json, tokenizer_config.json (Qwen3 chat template);
//                <|endoftext|> = 0, <|im_start|> = 1, <|im_end|> = 2 (eos)
//   kimi_k2      tiktoken.model, tokenizer_config.json, chat_template.jinja;
//                766 ranks, then [BOS] = 766, [EOS] = 767, <|im_end|> = 768, ...
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace epserve::tokenizer {

enum class TokenizerFamily { kDeepseekV3, kQwen3, kKimiK2 };

struct TokenizerFile {
  std::string name;           // file name inside the model directory
  std::string_view contents;  // static storage
};

inline constexpr int kSmallTokenizerVocabSize = 1024;

std::vector<TokenizerFile> family_tokenizer_files(TokenizerFamily family);

// "deepseek_v3", "qwen3", "kimi_k2" (also accepts "deepseek", "qwen", "kimi", "qwen3_moe").
std::optional<TokenizerFamily> tokenizer_family_from_name(std::string_view name);
std::string_view tokenizer_family_name(TokenizerFamily family);

// Writes the family's files into dir (which must exist).
void write_family_tokenizer_files(TokenizerFamily family, const std::filesystem::path& dir);

namespace embedded {
struct EmbeddedFile {
  const char* family;
  const char* name;
  const unsigned char* data;
  size_t size;
};
extern const EmbeddedFile kFiles[];
extern const size_t kNumFiles;
}  // namespace embedded

}  // namespace epserve::tokenizer
