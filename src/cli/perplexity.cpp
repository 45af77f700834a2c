// epserve perplexity: mean negative log-likelihood and perplexity of a model over the tokens of
// a text file, with Hugging Face's strided-window recipe (transformers' "Perplexity of
// fixed-length models"): windows of --max-length tokens start every --stride tokens; each
// window scores only the tokens the previous windows did not (the first token of the text is
// never scored). Unlike that recipe's per-window averages, the mean here is over scored tokens.
// Prints {"tokens", "scored_tokens", "windows", "nll", "perplexity", ...} as JSON.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "comm/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "model/causal_lm.h"
#include "runtime/group_runner.h"
#include "runtime/model_runner.h"
#include "runtime/parallel_setup.h"
#include "server/parallel_flags.h"
#include "tokenizer/tokenizer.h"

namespace epserve::cli {
namespace {

struct PerplexityOptions {
  std::string model_path;
  std::string text_file;
  int64_t max_length = 512;
  int64_t stride = 0;  // 0: max_length
  bool add_bos = false;
  std::string output;
  int num_threads = 0;
  std::string log_level = "warning";
  ParallelOptions parallel;
};

struct Window {
  int64_t begin, end;    // tokens [begin, end) go in
  int64_t first_scored;  // targets [first_scored, end) are scored
};

std::vector<Window> strided_windows(int64_t num_tokens, int64_t max_length, int64_t stride) {
  std::vector<Window> windows;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < num_tokens; begin += stride) {
    int64_t end = std::min(begin + max_length, num_tokens);
    int64_t first = std::max(prev_end, begin + 1);
    if (first < end) windows.push_back({begin, end, first});
    prev_end = end;
    if (end == num_tokens) break;
  }
  return windows;
}

// -log softmax(row)[target], in double.
double token_nll(const float* row, int64_t vocab, int32_t target) {
  float max_logit = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max_logit);
  return std::log(sum) + max_logit - row[target];
}

std::vector<int32_t> read_tokens(const PerplexityOptions& o) {
  std::ifstream in(o.text_file, std::ios::binary);
  EPS_CHECK(in.good(), "--text-file: cannot read {}", o.text_file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto tok = tokenizer::Tokenizer::load(o.model_path);
  std::vector<int32_t> ids = tok.encode(ss.str(), true);
  if (o.add_bos) {
    auto bos = tok.bos_id();
    EPS_CHECK(bos.has_value(), "--add-bos: the tokenizer of {} has no BOS token", o.model_path);
    if (ids.empty() || ids.front() != *bos) ids.insert(ids.begin(), *bos);
  }
  EPS_CHECK(ids.size() >= 2, "--text-file: {} has {} token(s); perplexity needs at least 2",
            o.text_file, ids.size());
  return ids;
}

int perplexity_rank(const PerplexityOptions& o) {
  set_log_level(o.log_level);
  RankContext ctx = setup_rank(o.parallel, o.model_path);
  if (o.num_threads > 0) ThreadPool::set_global_threads(o.num_threads);
  const int64_t stride = o.stride > 0 ? o.stride : o.max_length;
  EPS_CHECK(stride <= o.max_length, "--stride {} is larger than --max-length {}", stride,
            o.max_length);
  std::vector<int32_t> ids = read_tokens(o);
  auto model = load_causal_lm(o.model_path, ctx.model_load());
  const ModelConfig& config = model->config();
  EPS_CHECK(config.max_position_embeddings <= 0 || o.max_length <= config.max_position_embeddings,
            "--max-length {} exceeds the model's max_position_embeddings {}", o.max_length,
            config.max_position_embeddings);
  const int64_t page = 16;
  const int64_t slots = (o.max_length + page - 1) / page * page;
  if (ctx.world && !ctx.leader) {
    run_group_follower(*model, slots, *ctx.parallel.attention_group);
    return 0;
  }
  std::unique_ptr<ModelRunner> runner;
  if (ctx.world) {
    runner = std::make_unique<GroupLeaderRunner>(*model, slots, ctx.parallel.attention_group);
  } else {
    runner = std::make_unique<LocalModelRunner>(*model, slots);
  }
  const int64_t V = runner->vocab_size();
  for (int32_t id : ids) {
    EPS_CHECK(id < V, "token id {} of {} is outside the model's vocabulary (0..{})", id,
              o.text_file, V - 1);
  }
  std::vector<Window> windows =
      strided_windows(static_cast<int64_t>(ids.size()), o.max_length, stride);
  double total = 0;
  int64_t scored = 0;
  std::vector<int32_t> window_slots(slots);
  for (int64_t i = 0; i < slots; ++i) window_slots[i] = static_cast<int32_t>(i);
  for (const Window& w : windows) {
    const int64_t len = w.end - w.begin;
    ForwardBatch batch;
    batch.add_sequence(ids.data() + w.begin, len, 0,
                       std::vector<int32_t>(window_slots.begin(), window_slots.begin() + len),
                       LogitsWanted::kAll);
    std::vector<float> logits(len * V);  // [len, V]: row j predicts token begin + j + 1
    runner->forward(batch, logits.data());
    for (int64_t t = w.first_scored; t < w.end; ++t) {
      total += token_nll(logits.data() + (t - w.begin - 1) * V, V, ids[t]);
      ++scored;
    }
  }
  runner.reset();  // a leader's runner tells its followers to stop
  if (ctx.world && ctx.world->rank() != 0) return 0;
  const double nll = total / static_cast<double>(scored);
  nlohmann::json out = {{"model_path", o.model_path}, {"text_file", o.text_file},
                        {"tokens", ids.size()},       {"scored_tokens", scored},
                        {"windows", windows.size()},  {"max_length", o.max_length},
                        {"stride", stride},           {"nll", nll},
                        {"perplexity", std::exp(nll)}};
  write_json_output(out, o.output);
  return 0;
}

}  // namespace

Command register_perplexity(CLI::App& app) {
  auto options = std::make_shared<PerplexityOptions>();
  CLI::App* sub = app.add_subcommand(
      "perplexity", "Mean negative log-likelihood and perplexity of a model over a text file");
  sub->add_option("--model-path", options->model_path, "Hugging Face model directory")->required();
  sub->add_option("--text-file", options->text_file, "UTF-8 text, tokenized as one document")
      ->required();
  sub->add_option("--max-length", options->max_length, "Tokens per window")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--stride", options->stride,
                  "Tokens between window starts (default: --max-length, no overlap)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--add-bos", options->add_bos,
                "Put the BOS token before the text when the tokenizer does not");
  sub->add_option("--output", options->output, "Write the JSON here instead of stdout");
  sub->add_option("--num-threads", options->num_threads,
                  "Compute threads (default: the cores this process may use)");
  sub->add_option("--log-level", options->log_level);
  add_parallel_flags(*sub, options->parallel);
  return Command{sub, [options] {
                   resolve_offline_flags(options->parallel, nullptr, "perplexity");
                   return launch_or_run(options->parallel,
                                        [options] { return perplexity_rank(*options); });
                 }};
}

}  // namespace epserve::cli
