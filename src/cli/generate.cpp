// epserve generate: offline generation from token ids (and, with a tokenizer, text), writing
// {"sequences": [{"input_ids", "output_ids", "logits"?, "finish_reason"}]} as JSON.
#include <fstream>
#include <functional>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "comm/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "eplb/placement.h"
#include "io/safetensors.h"
#include "model/causal_lm.h"
#include "runtime/expert_runtime.h"
#include "runtime/generator.h"
#include "runtime/group_runner.h"
#include "runtime/parallel_setup.h"
#include "runtime/pass_trace.h"
#include "server/parallel_flags.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve::cli {
namespace {

struct GenerateOptions {
  std::string model_path;
  std::vector<std::string> input_ids;
  std::vector<std::string> prompts;
  std::vector<std::string> chats;
  std::vector<std::string> image_tensors;
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
  ParallelOptions parallel;
  ExpertRuntimeOptions experts;
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

// Brings every group's results to the first leader (leader g holds the requests i % D == g).
void gather_results(Communicator& leaders, int groups, std::vector<GenerateResult>& results) {
  nlohmann::json mine = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    if (static_cast<int>(i % groups) != leaders.rank()) continue;
    mine.push_back({{"index", i},
                    {"output_ids", results[i].output_ids},
                    {"logits", results[i].logits},
                    {"finish_reason", results[i].finish_reason}});
  }
  std::vector<uint8_t> bytes = nlohmann::json::to_cbor(mine);
  std::vector<int64_t> sizes(leaders.size());
  int64_t size = static_cast<int64_t>(bytes.size());
  leaders.allgather(&size, sizeof(size), sizes.data());
  std::vector<size_t> recv_bytes(sizes.begin(), sizes.end());
  std::vector<uint8_t> all(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}));
  leaders.allgatherv(bytes.data(), bytes.size(), all.data(), recv_bytes);
  size_t offset = 0;
  for (int64_t s : sizes) {
    auto part = nlohmann::json::from_cbor(all.begin() + offset, all.begin() + offset + s);
    offset += s;
    for (const auto& r : part) {
      GenerateResult& out = results[r["index"].get<size_t>()];
      out.output_ids = r["output_ids"].get<std::vector<int32_t>>();
      out.logits = r["logits"].get<std::vector<std::vector<float>>>();
      out.finish_reason = r["finish_reason"].get<std::string>();
    }
  }
}

// --image-tensors FILE:PREFIX: PREFIX.grid_thw (I32 [3]) and PREFIX.pixel_values (F32) of a
// safetensors file, an image as the frontend's image processor gives it.
ImageInput load_image_tensors(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  EPS_CHECK(colon != std::string::npos, "--image-tensors takes FILE:PREFIX, got '{}'", spec);
  auto file = SafetensorsFile::open(spec.substr(0, colon));
  const std::string prefix = spec.substr(colon + 1);
  Tensor grid = file->get(prefix + ".grid_thw");
  Tensor pixels = file->get(prefix + ".pixel_values");
  EPS_CHECK(grid.dtype() == DType::I32 && grid.numel() == 3 && pixels.dtype() == DType::F32,
            "{}: '{}.grid_thw' must be I32 [3] and '{}.pixel_values' F32", spec, prefix, prefix);
  ImageInput im;
  im.grid_t = grid.ptr<int32_t>()[0];
  im.grid_h = grid.ptr<int32_t>()[1];
  im.grid_w = grid.ptr<int32_t>()[2];
  im.pixel_values.assign(pixels.ptr<float>(), pixels.ptr<float>() + pixels.numel());
  im.content_hash = std::hash<std::string>{}(spec);
  return im;
}

int generate_rank(const GenerateOptions& o) {
  set_log_level(o.log_level);
  RankContext ctx = setup_rank(o.parallel, o.model_path);
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
  auto model = load_causal_lm(o.model_path, ctx.model_load());
  auto trace =
      make_pass_trace(*model, o.parallel.trace_file, ctx.info.rank, o.parallel.world_size());
  ExpertRuntimeOptions expert_options = o.experts;
  std::unique_ptr<ExpertRuntime> experts =
      make_expert_runtime(*model, ctx, o.parallel, expert_options);
  std::vector<ImageInput> images;
  for (const auto& spec : o.image_tensors) images.push_back(load_image_tensors(spec));
  size_t next_image = 0;
  std::vector<GenerateRequest> requests;
  for (auto& ids : prompts) {
    GenerateRequest r;
    r.input_ids = std::move(ids);
    const int32_t image_token = model->config().vision.image_token_id;
    for (size_t t = 0; t < r.input_ids.size(); ++t) {
      bool run_start =
          r.input_ids[t] == image_token && (t == 0 || r.input_ids[t - 1] != image_token);
      if (!run_start || !model->config().has_vision()) continue;
      EPS_CHECK(next_image < images.size(), "the prompts have more images than --image-tensors");
      r.images.push_back(images[next_image++]);
    }
    for (int32_t id : r.input_ids) {
      EPS_CHECK(id < model->vocab_size(),
                "--input-ids: token id {} is outside the vocabulary (0..{})", id,
                model->vocab_size() - 1);
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
  EPS_CHECK(next_image == images.size(), "{} --image-tensors for {} images in the prompts",
            images.size(), next_image);
  // With DP attention each group generates every D-th request; results come back to rank 0.
  const int groups = o.parallel.attention_groups();
  std::vector<size_t> mine;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (static_cast<int>(i % groups) == ctx.dp_rank) mine.push_back(i);
  }
  std::vector<GenerateRequest> my_requests;
  for (size_t i : mine) my_requests.push_back(requests[i]);
  const int64_t slots = kv_slots_needed(my_requests, 16);
  std::vector<GenerateResult> my_results;
  if (!ctx.world) {
    my_results = generate(*model, my_requests);
  } else if (!ctx.leader) {
    run_group_follower(*model, slots, *ctx.parallel.attention_group, [&](int64_t code) {
      if (experts) experts->run_command(code);
    });
    return 0;
  } else {
    GroupLeaderRunner runner(*model, slots, ctx.parallel.attention_group);
    my_results = generate(runner, my_requests, nullptr, 16, ctx.leaders.get());
  }
  std::vector<GenerateResult> results(requests.size());
  for (size_t j = 0; j < mine.size(); ++j) results[mine[j]] = std::move(my_results[j]);
  if (ctx.leaders) gather_results(*ctx.leaders, groups, results);
  if (ctx.world && ctx.world->rank() != 0) return 0;
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
  if (experts) out["experts"] = experts->stats();
  write_json_output(out, o.output);
  return 0;
}

int run_generate(const GenerateOptions& o) {
  return launch_or_run(o.parallel, [&] { return generate_rank(o); });
}

}  // namespace

Command register_generate(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate tokens offline from prompts");
  sub->add_option("--model-path", options->model_path, "Hugging Face model directory")->required();
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
  sub->add_option(
      "--image-tensors", options->image_tensors,
      "A preprocessed image as FILE:PREFIX (safetensors PREFIX.grid_thw, "
      "PREFIX.pixel_values), for Qwen3-VL; repeat; images go to the prompts' image-token "
      "runs in order");
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
  add_parallel_flags(*sub, options->parallel);
  add_expert_flags(*sub, options->experts, RecorderDump::kNone);
  return Command{sub, [options] {
                   resolve_offline_flags(options->parallel, &options->experts, "generate");
                   return run_generate(*options);
                 }};
}

}  // namespace epserve::cli
