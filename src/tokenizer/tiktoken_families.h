// What the model code of tiktoken-format tokenizers declares: the split pattern and the special
// tokens. Kimi-K2 (tokenization_kimi.py, tokenizer_class "TikTokenTokenizer") and Qwen-1
// (tokenization_qwen.py, "QWenTokenizer") are known; we read them natively, so
// --trust-remote-code is accepted and needed for nothing.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace epserve::tokenizer {

// Kimi-K2's pattern, as its tokenization_kimi.py declares it (fancy-regex dialect with class
// intersections).
extern const char* const kKimiPattern;
// Qwen-1's qwen.tiktoken pattern.
extern const char* const kQwenTiktokenPattern;

// Picks the family from tokenizer_config.json's tokenizer_class (or the file name) and returns
// its spec. `contents` is the tiktoken file (the number of base tokens fixes the special ids).
Tokenizer::TiktokenSpec tiktoken_spec_for(const std::filesystem::path& file,
                                          const nlohmann::json& config, std::string_view contents);

}  // namespace epserve::tokenizer
