#include "tokenizer/tiktoken_families.h"

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace epserve::tokenizer {

const char* const kKimiPattern =
    "[\\p{Han}]+"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";

const char* const kQwenTiktokenPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

size_t count_base_tokens(std::string_view contents) {
  size_t n = 0;
  for (size_t pos = 0; pos < contents.size();) {
    size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    if (end > pos && !(end == pos + 1 && contents[pos] == '\r')) ++n;
    pos = end + 1;
  }
  return n;
}

Tokenizer::TiktokenSpec kimi_spec(const nlohmann::json& config, size_t num_base) {
  constexpr int kNumReserved = 256;
  Tokenizer::TiktokenSpec spec;
  spec.pattern = kKimiPattern;
  spec.kimi_chunking = true;
  std::map<int32_t, std::string> named;
  if (config.contains("added_tokens_decoder")) {
    for (auto it = config["added_tokens_decoder"].begin();
         it != config["added_tokens_decoder"].end(); ++it) {
      named[std::stoi(it.key())] = it.value().at("content").get<std::string>();
    }
  }
  for (int32_t id = static_cast<int32_t>(num_base);
       id < static_cast<int32_t>(num_base) + kNumReserved + 2; ++id) {
    auto it = named.find(id);
    spec.special_tokens.emplace_back(
        it != named.end() ? it->second : fmt::format("<|reserved_token_{}|>", id), id);
  }
  spec.bos_token = config_token(config, "bos_token").value_or("[BOS]");
  spec.eos_token = config_token(config, "eos_token").value_or("[EOS]");
  return spec;
}

Tokenizer::TiktokenSpec qwen_spec(size_t num_base) {
  Tokenizer::TiktokenSpec spec;
  spec.pattern = kQwenTiktokenPattern;
  int32_t id = static_cast<int32_t>(num_base);
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    spec.special_tokens.emplace_back(s, id++);
  }
  for (int i = 0; i < 205; ++i)
    spec.special_tokens.emplace_back(fmt::format("<|extra_{}|>", i), id++);
  spec.eos_token = "<|endoftext|>";
  return spec;
}

}  // namespace

Tokenizer::TiktokenSpec tiktoken_spec_for(const std::filesystem::path& file,
                                          const nlohmann::json& config, std::string_view contents) {
  std::string cls = config.is_object() ? config.value("tokenizer_class", std::string()) : "";
  size_t num_base = count_base_tokens(contents);
  if (cls == "TikTokenTokenizer" || (cls.empty() && file.filename() == "tiktoken.model")) {
    return kimi_spec(config, num_base);
  }
  if (cls == "QWenTokenizer" || (cls.empty() && file.filename() == "qwen.tiktoken")) {
    return qwen_spec(num_base);
  }
  EPS_THROW(
      "{}: unknown tiktoken tokenizer_class '{}' in tokenizer_config.json (known: "
      "TikTokenTokenizer for Kimi, QWenTokenizer for Qwen)",
      file.string(), cls);
}

}  // namespace epserve::tokenizer
