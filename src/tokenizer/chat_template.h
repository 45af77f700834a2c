// Chat templates: the Jinja template a model ships (tokenizer_config.json "chat_template", a
// string or a list of named templates, or a chat_template.jinja file) rendered with the messages
// of an OpenAI request. The template is parsed when loaded, so an unsupported construct is
// reported then, with its line. The template sees what Hugging Face transformers passes:
// messages, tools (None unless given), documents (None), add_generation_prompt, the special
// tokens of tokenizer_config.json (bos_token, eos_token, unk_token, pad_token) and any extra
// variables (enable_thinking for Qwen3, thinking for DeepSeek-V3.1, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace epserve::tokenizer {

namespace jinja {
class Template;
}

class ChatTemplate {
 public:
  // Throws when the directory has no chat template or the template cannot be parsed.
  static ChatTemplate load(const std::filesystem::path& model_dir,
                           const std::string& name = "default");
  // `config` is tokenizer_config.json (for the special tokens); `origin` names the source.
  static ChatTemplate from_source(const std::string& source, const nlohmann::json& config,
                                  const std::string& origin);

  std::string render_json(
      const nlohmann::ordered_json& messages, bool add_generation_prompt,
      const nlohmann::ordered_json& extra_kwargs = nlohmann::ordered_json::object()) const;
  // Same, with JSON text (a list of messages; an object of extra variables, or "").
  std::string render(std::string_view messages_json, bool add_generation_prompt,
                     std::string_view extra_kwargs_json = "{}") const;

  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<const jinja::Template> template_;
  nlohmann::ordered_json special_tokens_;
  std::string source_;
  std::string origin_;
};

}  // namespace epserve::tokenizer
