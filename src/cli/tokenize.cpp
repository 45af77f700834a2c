// epserve tokenize: the model's tokenizer and chat template from the command line.
//   --text S           token ids of S (one line, space separated)
//   --chat JSON        the chat template rendered with these messages, then its ids
//   --decode "1 2 3"   the text of ids
//   --jsonl FILE       one JSON string per line in, one line of ids out (for corpus checks);
//                      a line {"hex": "..."} gives raw bytes (invalid UTF-8 allowed)
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve::cli {

namespace {

struct TokenizeOptions {
  std::string model_path;
  std::string text;
  std::string chat;
  std::string decode;
  std::string jsonl;
  bool no_special = false;
  bool skip_special = false;
  bool add_generation_prompt = true;
  std::string chat_kwargs = "{}";
};

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(' ');
    out += std::to_string(ids[i]);
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

int run_tokenize(const TokenizeOptions& o) {
  auto tok = tokenizer::Tokenizer::load(o.model_path);
  if (!o.jsonl.empty()) {
    std::ifstream in(o.jsonl);
    EPS_CHECK(in.good(), "{}: cannot open the file", o.jsonl);
    std::string line;
    std::ostringstream out;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      std::string text = j.is_string() ? j.get<std::string>() : from_hex(j.at("hex"));
      out << join_ids(tok.encode(text, !o.no_special)) << '\n';
    }
    std::cout << out.str();
    return 0;
  }
  if (!o.decode.empty()) {
    std::istringstream in(o.decode);
    std::vector<int32_t> ids;
    for (int32_t id; in >> id;) ids.push_back(id);
    std::cout << tok.decode(ids, o.skip_special) << '\n';
    return 0;
  }
  std::string text = o.text;
  if (!o.chat.empty()) {
    auto tmpl = tokenizer::ChatTemplate::load(o.model_path);
    text = tmpl.render(o.chat, o.add_generation_prompt, o.chat_kwargs);
    std::cout << text << '\n';
    std::cout << join_ids(tok.encode(text, false)) << '\n';
    return 0;
  }
  std::cout << join_ids(tok.encode(text, !o.no_special)) << '\n';
  return 0;
}

}  // namespace

Command register_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* sub =
      app.add_subcommand("tokenize", "Encode, decode or render a chat with a model's tokenizer");
  sub->add_option("--model-path", options->model_path, "Model directory")->required();
  sub->add_option("--text", options->text, "Text to encode");
  sub->add_option("--chat", options->chat, "Messages (JSON list) to render and encode");
  sub->add_option("--chat-kwargs", options->chat_kwargs,
                  "Extra template variables as a JSON object, e.g. {\"enable_thinking\": false}");
  sub->add_flag("!--no-generation-prompt", options->add_generation_prompt,
                "Do not add the generation prompt");
  sub->add_option("--decode", options->decode, "Ids to decode, space separated");
  sub->add_option("--jsonl", options->jsonl, "File with one JSON string per line to encode");
  sub->add_flag("--no-special-tokens", options->no_special, "Do not add BOS/EOS");
  sub->add_flag("--skip-special-tokens", options->skip_special,
                "Drop special tokens when decoding");
  return Command{sub, [options] { return run_tokenize(*options); }};
}

}  // namespace epserve::cli
