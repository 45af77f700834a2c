// epserve generate: offline generation from token ids (and, with a tokenizer, text), writing
// {"sequences": [{"input_ids", "output_ids", "logits"?, "finish_reason"}]} as JSON.
#include <fstream>
#include <optional>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "runtime/generator.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve::cli {
namespace {

struct GenerateOptions {
  std::string model_path;
  std::vector<std::string> input_ids;
  std::vector<std::string> prompts;
  std::vector<std::string> chats;
  std::string chat_template_kwargs = "{}";
  int64_t max_new_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = -1;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool return_logits = false;
  std::string output;
  int num_threads = 0;
  std::string log_level = "warning";
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long value = 0;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    EPS_CHECK(used > 0 && used == item.size() && value >= 0 && value <= INT32_MAX,
              "--input-ids: '{}' is not a token id (use comma-separated integers like 1,2,3)",
              item);
    ids.push_back(static_cast<int32_t>(value));
  }
  EPS_CHECK(!ids.empty(), "--input-ids: empty list");
  return ids;
}

int run_generate(const GenerateOptions& o) {
  set_log_level(o.log_level);
  if (o.num_threads > 0) ThreadPool::set_global_threads(o.num_threads);
  EPS_CHECK(!o.input_ids.empty() || !o.prompts.empty() || !o.chats.empty(),
            "give at least one prompt with --input-ids, --prompt or --chat");
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& text : o.input_ids) prompts.push_back(parse_ids(text));
  std::optional<tokenizer::Tokenizer> tok;
  if (!o.prompts.empty() || !o.chats.empty()) tok = tokenizer::Tokenizer::load(o.model_path);
  for (const auto& text : o.prompts) prompts.push_back(tok->encode(text, true));
  if (!o.chats.empty()) {
    auto chat_template = tokenizer::ChatTemplate::load(o.model_path);
    for (const auto& messages : o.chats) {
      std::string rendered = chat_template.render(messages, true, o.chat_template_kwargs);
      prompts.push_back(tok->encode(rendered, false));
    }
  }
  auto model = load_causal_lm(o.model_path);
  std::vector<GenerateRequest> requests;
  for (auto& ids : prompts) {
    GenerateRequest r;
    r.input_ids = std::move(ids);
    for (int32_t id : r.input_ids) {
      EPS_CHECK(id < model->vocab_size(), "--input-ids: token id {} is outside the vocabulary (0..{})",
                id, model->vocab_size() - 1);
    }
    r.max_new_tokens = o.max_new_tokens;
    r.sampling.temperature = o.temperature;
    r.sampling.top_p = o.top_p;
    r.sampling.top_k = o.top_k;
    r.seed = o.seed;
    r.ignore_eos = o.ignore_eos;
    r.return_logits = o.return_logits;
    requests.push_back(std::move(r));
  }
  std::vector<GenerateResult> results = generate(*model, requests);
  nlohmann::json out;
  out["sequences"] = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    nlohmann::json s;
    s["input_ids"] = requests[i].input_ids;
    s["output_ids"] = results[i].output_ids;
    s["finish_reason"] = results[i].finish_reason;
    if (tok) s["text"] = tok->decode(results[i].output_ids, true);
    if (o.return_logits) s["logits"] = results[i].logits;
    out["sequences"].push_back(std::move(s));
  }
  if (o.output.empty()) {
    std::cout << out.dump() << "\n";
  } else {
    std::ofstream f(o.output);
    EPS_CHECK(f.good(), "--output: cannot write {}", o.output);
    f << out.dump() << "\n";
  }
  return 0;
}

}  // namespace

Command register_generate(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate tokens offline from prompts");
  sub->add_option("--model-path", options->model_path, "Hugging Face model directory")
      ->required();
  sub->add_option("--input-ids", options->input_ids,
                  "A prompt as comma-separated token ids; repeat for several prompts");
  sub->add_option("--prompt", options->prompts,
                  "A text prompt (tokenized with the model's tokenizer); repeatable");
  sub->add_option("--chat", options->chats,
                  "Chat messages as JSON, e.g. '[{\"role\":\"user\",\"content\":\"Hi\"}]', "
                  "rendered with the model's chat template; repeatable")
      ->allow_extra_args(false);  // keep CLI11 from splitting a JSON list at its commas
  sub->add_option("--chat-template-kwargs", options->chat_template_kwargs,
                  "Extra template variables as JSON, e.g. '{\"enable_thinking\": false}'");
  sub->add_option("--max-new-tokens", options->max_new_tokens, "Tokens to generate per prompt")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--temperature", options->temperature, "0 means greedy")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", options->top_p)->check(CLI::Range(0.0, 1.0));
  sub->add_option("--top-k", options->top_k);
  sub->add_option("--seed", options->seed, "Random seed for sampling");
  sub->add_flag("--ignore-eos", options->ignore_eos, "Do not stop at the EOS token");
  sub->add_flag("--return-logits", options->return_logits,
                "Write the logits behind every generated token");
  sub->add_option("--output", options->output, "Write the JSON here instead of stdout");
  sub->add_option("--num-threads", options->num_threads,
                  "Compute threads (default: the cores this process may use)");
  sub->add_option("--log-level", options->log_level);
  return Command{sub, [options] { return run_generate(*options); }};
}

}  // namespace epserve::cli
