// Reads tiktoken BPE files (base64 token, space, rank per line) and the model families' declared
// patterns and special tokens; also Tokenizer::load, which finds the tokenizer files of a model
// directory.
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tiktoken_families.h"
#include "tokenizer/tokenizer_impl.h"

namespace epserve::tokenizer {

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<std::string> base64_decode(std::string_view s) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EPS_CHECK(in.good(), "{}: cannot open the file", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Tokenizer Tokenizer::from_tiktoken(std::string_view contents, const TiktokenSpec& spec,
                                   const std::string& origin) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->format = TokenizerFormat::kTiktoken;
  impl->origin = origin;
  impl->kimi_chunking = spec.kimi_chunking;
  std::unordered_map<std::string, int32_t> ranks;
  size_t line_no = 0;
  for (size_t pos = 0; pos < contents.size();) {
    size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    std::string_view line = contents.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t space = line.find(' ');
    EPS_CHECK(space != std::string_view::npos, "{}: line {} is not '<base64 token> <rank>'", origin,
              line_no);
    auto token = base64_decode(line.substr(0, space));
    EPS_CHECK(token.has_value(), "{}: line {} has invalid base64", origin, line_no);
    std::string rank_text(line.substr(space + 1));
    char* rest = nullptr;
    long rank = std::strtol(rank_text.c_str(), &rest, 10);
    EPS_CHECK(!rank_text.empty() && *rest == '\0' && rank >= 0,
              "{}: line {} has an invalid rank '{}'", origin, line_no, rank_text);
    impl->set_token(static_cast<int32_t>(rank), byte_level_encode(*token), *token,
                    TokenKind::kNormal);
    ranks.emplace(std::move(*token), static_cast<int32_t>(rank));
  }
  EPS_CHECK(!ranks.empty(), "{}: no tokens in the file", origin);
  for (int b = 0; b < 256; ++b) {
    EPS_CHECK(ranks.count(std::string(1, static_cast<char>(b))),
              "{}: the vocabulary lacks the single byte {}", origin, b);
  }
  impl->rank_bpe.init(std::move(ranks));
  impl->tiktoken_regex.emplace(spec.pattern, origin + " split pattern");
  for (const auto& [content, id] : spec.special_tokens) {
    AddedToken a;
    a.content = content;
    a.id = id;
    a.special = true;
    impl->added.push_back(a);
  }
  std::vector<const AddedToken*> specials;
  for (const AddedToken& a : impl->added) {
    impl->set_token(a.id, a.content, a.content, TokenKind::kSpecial);
    specials.push_back(&a);
  }
  impl->raw_matcher.build(specials);
  impl->bos_token = spec.bos_token;
  impl->eos_token = spec.eos_token;
  if (spec.bos_token)
    impl->bos_id = impl->by_spelling.count(*spec.bos_token)
                       ? std::optional(impl->by_spelling[*spec.bos_token])
                       : std::nullopt;
  if (spec.eos_token)
    impl->eos_id = impl->by_spelling.count(*spec.eos_token)
                       ? std::optional(impl->by_spelling[*spec.eos_token])
                       : std::nullopt;
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  EPS_CHECK(fs::is_directory(dir), "{}: not a directory (expected a model directory)",
            dir.string());
  fs::path config_path = dir / "tokenizer_config.json";
  std::string config_text = fs::exists(config_path) ? read_file(config_path) : std::string();
  fs::path json_path = dir / "tokenizer.json";
  if (fs::exists(json_path)) {
    return from_hf_json(read_file(json_path), config_text, json_path.string());
  }
  fs::path tiktoken_path;
  if (fs::exists(dir / "tiktoken.model")) {
    tiktoken_path = dir / "tiktoken.model";
  } else {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().extension() == ".tiktoken") tiktoken_path = entry.path();
    }
  }
  EPS_CHECK(!tiktoken_path.empty(),
            "{}: no tokenizer files (expected tokenizer.json, tiktoken.model or *.tiktoken)",
            dir.string());
  nlohmann::json config;
  if (!config_text.empty()) {
    try {
      config = nlohmann::json::parse(config_text);
    } catch (const nlohmann::json::exception& e) {
      EPS_THROW("{}: not valid JSON: {}", config_path.string(), e.what());
    }
  }
  std::string contents = read_file(tiktoken_path);
  TiktokenSpec spec = tiktoken_spec_for(tiktoken_path, config, contents);
  return from_tiktoken(contents, spec, tiktoken_path.string());
}

}  // namespace epserve::tokenizer
