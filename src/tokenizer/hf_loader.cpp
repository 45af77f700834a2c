// Reads Hugging Face tokenizer.json (BPE model) and tokenizer_config.json into a Tokenizer.
#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace epserve::tokenizer {

namespace {

using Json = nlohmann::json;

void read_post_processor(const Json& j, Tokenizer::Impl& impl, const std::string& origin) {
  if (j.is_null()) return;
  std::string type = j.at("type").get<std::string>();
  if (type == "ByteLevel") return;  // only trims offsets
  if (type == "Sequence") {
    for (const auto& item : j.at("processors")) read_post_processor(item, impl, origin);
    return;
  }
  if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const auto& ids = j.at("special_tokens").at(name).at("ids");
      auto& dst = seen_sequence ? impl.suffix_ids : impl.prefix_ids;
      for (const auto& id : ids) dst.push_back(id.get<int32_t>());
    }
    return;
  }
  EPS_THROW(
      "{}: post_processor type '{}' is not supported (supported: ByteLevel, "
      "TemplateProcessing, Sequence)",
      origin, type);
}

void check_decoder(const Json& j, const std::string& origin) {
  EPS_CHECK(!j.is_null(), "{}: a decoder is required (ByteLevel)", origin);
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& item : j.at("decoders")) check_decoder(item, origin);
    return;
  }
  EPS_CHECK(type == "ByteLevel", "{}: decoder type '{}' is not supported (supported: ByteLevel)",
            origin, type);
}

std::pair<std::string, std::string> parse_merge(const Json& m, size_t rank,
                                                const std::string& origin) {
  if (m.is_array()) {
    EPS_CHECK(m.size() == 2, "{}: merge {} must have two parts", origin, rank);
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  }
  std::string s = m.get<std::string>();
  size_t space = s.find(' ', 1);
  EPS_CHECK(space != std::string::npos, "{}: merge {} '{}' has no space", origin, rank, s);
  return {s.substr(0, space), s.substr(space + 1)};
}

Tokenizer build(const Json& tj, const Json& config, const std::string& origin) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->format = TokenizerFormat::kHfBpe;
  impl->origin = origin;

  const Json& model = tj.at("model");
  std::string model_type = model.value("type", std::string("BPE"));
  EPS_CHECK(model_type == "BPE", "{}: model type '{}' is not supported (supported: BPE)", origin,
            model_type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    EPS_CHECK(!model.contains(key) || model[key].is_null() || model[key].get<std::string>().empty(),
              "{}: BPE {} is not supported", origin, key);
  }
  EPS_CHECK(!model.value("byte_fallback", false), "{}: BPE byte_fallback is not supported", origin);
  EPS_CHECK(!model.contains("dropout") || model["dropout"].is_null(),
            "{}: BPE dropout is not supported", origin);

  impl->normalizer = make_normalizer(tj.value("normalizer", Json()), origin);
  impl->pre_tokenizer = make_pre_tokenizer(tj.value("pre_tokenizer", Json()), origin);
  check_decoder(tj.value("decoder", Json()), origin);
  bool byte_level = impl->pre_tokenizer.byte_level;

  std::unordered_map<std::string, int32_t> vocab;
  const Json& vocab_json = model.at("vocab");
  EPS_CHECK(vocab_json.is_object(), "{}: model.vocab must be an object", origin);
  vocab.reserve(vocab_json.size());
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    vocab.emplace(it.key(), it.value().get<int32_t>());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const Json& merges_json = model.at("merges");
  merges.reserve(merges_json.size());
  for (size_t r = 0; r < merges_json.size(); ++r)
    merges.push_back(parse_merge(merges_json[r], r, origin));

  std::optional<int32_t> unk_id;
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it != vocab.end()) unk_id = it->second;
  }
  for (const auto& [text, id] : vocab) {
    EPS_CHECK(id >= 0, "{}: negative id {} for '{}'", origin, id, text);
    std::optional<std::string> bytes = byte_level_decode(text);
    impl->set_token(id, text, bytes ? std::move(*bytes) : text, TokenKind::kNormal);
  }
  impl->hf_bpe.init(std::move(vocab), merges, byte_level, model.value("ignore_merges", false),
                    unk_id, origin);

  for (const auto& t : tj.value("added_tokens", Json::array())) {
    AddedToken a;
    a.id = t.at("id").get<int32_t>();
    a.content = t.at("content").get<std::string>();
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.single_word = t.value("single_word", false);
    a.normalized = t.value("normalized", !a.special);
    impl->added.push_back(a);
  }
  std::vector<const AddedToken*> raw, normalized;
  std::vector<AddedToken> normalized_forms;
  normalized_forms.reserve(impl->added.size());
  for (const AddedToken& a : impl->added) {
    std::optional<std::string> bytes = byte_level_decode(a.content);
    impl->set_token(a.id, a.content, bytes ? std::move(*bytes) : a.content,
                    a.special ? TokenKind::kSpecial : TokenKind::kNormal);
    if (!a.normalized) raw.push_back(&a);
  }
  for (AddedToken& a : impl->added) {
    if (!a.normalized) continue;
    // Matched against its normalized form, as HF does; the content stays for decoding.
    AddedToken copy = a;
    if (impl->normalizer) copy.content = impl->normalizer->normalize(a.content);
    normalized_forms.push_back(copy);
  }
  // Keep the normalized forms alive with the tokenizer.
  size_t raw_count = impl->added.size();
  for (auto& f : normalized_forms) impl->added.push_back(std::move(f));
  raw.clear();
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& a = impl->added[i];
    if (i < raw_count && !a.normalized) raw.push_back(&a);
    if (i >= raw_count) normalized.push_back(&a);
  }
  impl->raw_matcher.build(raw);
  impl->normalized_matcher.build(normalized);

  impl->bos_token = config_token(config, "bos_token");
  impl->eos_token = config_token(config, "eos_token");
  auto lookup = [&](const std::optional<std::string>& s) -> std::optional<int32_t> {
    if (!s) return std::nullopt;
    auto it = impl->by_spelling.find(*s);
    if (it == impl->by_spelling.end()) return std::nullopt;
    return it->second;
  };
  impl->bos_id = lookup(impl->bos_token);
  impl->eos_id = lookup(impl->eos_token);
  bool config_decides =
      config.is_object() && (config.contains("add_bos_token") || config.contains("add_eos_token"));
  if (config_decides) {
    if (config.value("add_bos_token", false)) {
      EPS_CHECK(impl->bos_id, "{}: add_bos_token is set but bos_token is not in the vocabulary",
                origin);
      impl->prefix_ids.push_back(*impl->bos_id);
    }
    if (config.value("add_eos_token", false)) {
      EPS_CHECK(impl->eos_id, "{}: add_eos_token is set but eos_token is not in the vocabulary",
                origin);
      impl->suffix_ids.push_back(*impl->eos_id);
    }
  } else {
    read_post_processor(tj.value("post_processor", Json()), *impl, origin);
  }
  return Tokenizer(std::move(impl));
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(std::string_view tokenizer_json, std::string_view config_json,
                                  const std::string& origin) {
  Json tj, config;
  try {
    tj = Json::parse(tokenizer_json);
  } catch (const Json::exception& e) {
    EPS_THROW("{}: not valid JSON: {}", origin, e.what());
  }
  if (!config_json.empty()) {
    try {
      config = Json::parse(config_json);
    } catch (const Json::exception& e) {
      EPS_THROW("{}: tokenizer_config.json is not valid JSON: {}", origin, e.what());
    }
  }
  EPS_CHECK(tj.is_object() && tj.contains("model"), "{}: not a tokenizer.json (no \"model\")",
            origin);
  try {
    return build(tj, config, origin);
  } catch (const Json::exception& e) {
    EPS_THROW("{}: malformed tokenizer.json: {}", origin, e.what());
  }
}

}  // namespace epserve::tokenizer
