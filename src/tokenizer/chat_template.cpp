#include "tokenizer/chat_template.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer_impl.h"

namespace epserve::tokenizer {

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EPS_CHECK(in.good(), "{}: cannot open the file", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::filesystem::path& dir, const std::string& name) {
  namespace fs = std::filesystem;
  fs::path config_path = dir / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path)) {
    try {
      config = nlohmann::json::parse(read_text(config_path));
    } catch (const nlohmann::json::exception& e) {
      EPS_THROW("{}: not valid JSON: {}", config_path.string(), e.what());
    }
  }
  fs::path jinja_path = dir / "chat_template.jinja";
  if (fs::exists(jinja_path))
    return from_source(read_text(jinja_path), config, jinja_path.string());
  EPS_CHECK(config.contains("chat_template"),
            "{}: the model has no chat template (no chat_template.jinja, no \"chat_template\" in "
            "tokenizer_config.json)",
            dir.string());
  const auto& t = config["chat_template"];
  if (t.is_string()) return from_source(t.get<std::string>(), config, config_path.string());
  EPS_CHECK(t.is_array(), "{}: \"chat_template\" must be a string or a list of named templates",
            config_path.string());
  std::string names;
  for (const auto& item : t) {
    std::string item_name = item.value("name", "");
    if (item_name == name) {
      return from_source(item.at("template").get<std::string>(), config,
                         config_path.string() + " (chat_template '" + name + "')");
    }
    names += (names.empty() ? "" : ", ") + item_name;
  }
  EPS_THROW("{}: no chat template named '{}' (available: {})", config_path.string(), name, names);
}

ChatTemplate ChatTemplate::from_source(const std::string& source, const nlohmann::json& config,
                                       const std::string& origin) {
  ChatTemplate c;
  c.source_ = source;
  c.origin_ = origin;
  try {
    c.template_ = std::make_shared<jinja::Template>(source);
  } catch (const Error& e) {
    EPS_THROW("{}: {}", origin, e.what());
  }
  c.special_tokens_ = nlohmann::ordered_json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (auto v = config_token(config, key)) c.special_tokens_[key] = *v;
  }
  return c;
}

std::string ChatTemplate::render_json(const nlohmann::ordered_json& messages,
                                      bool add_generation_prompt,
                                      const nlohmann::ordered_json& extra_kwargs) const {
  EPS_CHECK(messages.is_array(), "chat messages must be a JSON list");
  jinja::Dict vars;
  vars.set("messages", jinja::Value::from_json(messages));
  vars.set("tools", jinja::Value(jinja::None{}));
  vars.set("documents", jinja::Value(jinja::None{}));
  vars.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it) {
    vars.set(it.key(), jinja::Value::from_json(it.value()));
  }
  if (extra_kwargs.is_object()) {
    for (auto it = extra_kwargs.begin(); it != extra_kwargs.end(); ++it) {
      vars.set(it.key(), jinja::Value::from_json(it.value()));
    }
  }
  try {
    return template_->render(vars);
  } catch (const Error& e) {
    EPS_THROW("{}: {}", origin_, e.what());
  }
}

std::string ChatTemplate::render(std::string_view messages_json, bool add_generation_prompt,
                                 std::string_view extra_kwargs_json) const {
  nlohmann::ordered_json messages, extra = nlohmann::ordered_json::object();
  try {
    messages = nlohmann::ordered_json::parse(messages_json);
    if (!extra_kwargs_json.empty()) extra = nlohmann::ordered_json::parse(extra_kwargs_json);
  } catch (const nlohmann::json::exception& e) {
    EPS_THROW("chat messages are not valid JSON: {}", e.what());
  }
  return render_json(messages, add_generation_prompt, extra);
}

}  // namespace epserve::tokenizer
