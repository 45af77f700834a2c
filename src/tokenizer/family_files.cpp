#include "tokenizer/family_files.h"

#include <fstream>

#include "core/error.h"

namespace epserve::tokenizer {

std::string_view tokenizer_family_name(TokenizerFamily family) {
  switch (family) {
    case TokenizerFamily::kDeepseekV3:
      return "deepseek_v3";
    case TokenizerFamily::kQwen3:
      return "qwen3";
    case TokenizerFamily::kKimiK2:
      return "kimi_k2";
  }
  return "";
}

std::optional<TokenizerFamily> tokenizer_family_from_name(std::string_view name) {
  if (name == "deepseek_v3" || name == "deepseek") return TokenizerFamily::kDeepseekV3;
  if (name == "qwen3" || name == "qwen" || name == "qwen3_moe") return TokenizerFamily::kQwen3;
  if (name == "kimi_k2" || name == "kimi") return TokenizerFamily::kKimiK2;
  return std::nullopt;
}

std::vector<TokenizerFile> family_tokenizer_files(TokenizerFamily family) {
  std::string_view wanted = tokenizer_family_name(family);
  std::vector<TokenizerFile> out;
  for (size_t i = 0; i < embedded::kNumFiles; ++i) {
    const auto& f = embedded::kFiles[i];
    if (wanted != f.family) continue;
    out.push_back({f.name, std::string_view(reinterpret_cast<const char*>(f.data), f.size)});
  }
  EPS_CHECK(!out.empty(), "no embedded tokenizer files for family {}", wanted);
  return out;
}

void write_family_tokenizer_files(TokenizerFamily family, const std::filesystem::path& dir) {
  for (const TokenizerFile& f : family_tokenizer_files(family)) {
    std::filesystem::path path = dir / f.name;
    std::ofstream out(path, std::ios::binary);
    EPS_CHECK(out.good(), "{}: cannot write the file", path.string());
    out.write(f.contents.data(), static_cast<std::streamsize>(f.contents.size()));
    EPS_CHECK(out.good(), "{}: write failed", path.string());
  }
}

}  // namespace epserve::tokenizer
