#include "runtime/bench_one_batch.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <random>
#include <string>

#include "comm/communicator.h"
#include "core/error.h"
#include "model/causal_lm.h"
#include "model/tensor_specs.h"
#include "runtime/generator.h"
#include "runtime/group_runner.h"
#include "runtime/pass_trace.h"

namespace epserve {

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

int64_t resident_weight_bytes() {
  // smaps: a header line per mapping ("start-end perms offset dev inode path"), then "Key: value"
  // lines; the Rss line of a *.safetensors mapping counts its resident pages.
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool weights = false;
  int64_t total = 0;
  while (std::getline(smaps, line)) {
    size_t colon = line.find(':');
    size_t space = line.find(' ');
    bool header = space != std::string::npos && (colon == std::string::npos || colon > space);
    if (header) {
      weights = line.size() > 12 && line.compare(line.size() - 12, 12, ".safetensors") == 0;
    } else if (weights && line.rfind("Rss:", 0) == 0) {
      total += std::stoll(line.substr(4)) * 1024;
    }
  }
  return total;
}

BenchOneBatchResult bench_one_batch(const BenchOneBatchOptions& o) {
  EPS_CHECK(o.batch_size > 0 && o.input_len > 0 && o.output_len > 0,
            "--batch-size, --input-len and --output-len must be positive");
  BenchOneBatchResult result;
  auto start = std::chrono::steady_clock::now();
  RankContext ctx = setup_rank(o.parallel, o.model_path);
  auto model = load_causal_lm(o.model_path, ctx.model_load());
  auto trace =
      make_pass_trace(*model, o.parallel.trace_file, ctx.info.rank, o.parallel.world_size());
  std::unique_ptr<ExpertRuntime> experts = make_expert_runtime(*model, ctx, o.parallel, o.experts);
  result.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model->vocab_size() - 1));
  // --batch-size is the whole batch: with DP attention, request i goes to group i % D (as
  // `generate` spreads them), and the figures below count every group's tokens.
  const int groups = o.parallel.attention_groups();
  std::vector<GenerateRequest> requests;
  for (int64_t i = 0; i < o.batch_size; ++i) {
    GenerateRequest r;
    r.input_ids.resize(o.input_len);
    for (auto& id : r.input_ids) id = token(rng);
    r.max_new_tokens = o.output_len;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    if (static_cast<int>(i % groups) == ctx.dp_rank) requests.push_back(std::move(r));
  }
  // A warm-up pass of the same batch first, as SGLang's bench_one_batch does: the first pass
  // pages in the mmapped weights, which is loading, not prefill.
  std::vector<GenerateRequest> warmup = requests;
  for (auto& r : warmup) r.max_new_tokens = std::min<int64_t>(2, o.output_len);
  GenerateTimings& timings = result.timings;
  const int64_t slots = kv_slots_needed(requests, 16);
  // Between warm-up and the timed run: rebalance from the warm-up's counts, then count afresh;
  // after it, sum the balancedness still pending.
  auto command = [&](GroupLeaderRunner* runner, ExpertCommand c) {
    if (runner) runner->send_control(static_cast<int64_t>(c));
    experts->run_command(static_cast<int64_t>(c));
  };
  auto between = [&](GroupLeaderRunner* runner) {
    if (!experts) return;
    if (o.experts.enable_eplb) command(runner, ExpertCommand::kRebalance);
    command(runner, ExpertCommand::kStart);
  };
  auto after = [&](GroupLeaderRunner* runner) {
    if (experts) command(runner, ExpertCommand::kFlushMetrics);
  };
  if (!ctx.world) {
    generate(*model, warmup);
    between(nullptr);
    generate(*model, requests, &timings);
    after(nullptr);
  } else if (!ctx.leader) {
    run_group_follower(*model, slots, *ctx.parallel.attention_group, [&](int64_t code) {
      if (experts) experts->run_command(code);
    });
    result.report = false;
  } else {
    GroupLeaderRunner runner(*model, slots, ctx.parallel.attention_group);
    // Groups step together (an idle one joins with empty batches): with fewer requests than
    // groups some have none, and the MoE layers span every rank.
    generate(runner, warmup, nullptr, 16, ctx.leaders.get());
    between(&runner);
    generate(runner, requests, &timings, 16, ctx.leaders.get());
    after(&runner);
  }
  if (experts) {
    nlohmann::json stats = experts->stats();
    result.balancedness = stats.value("expert_balancedness_mean", -1.0);
    result.eplb_layers_moved = stats.value("eplb_layers_moved", int64_t{0});
  }
  result.report = !ctx.world || ctx.world->rank() == 0;
  result.rank = ctx.world ? ctx.world->rank() : 0;
  result.resident_weight_bytes = resident_weight_bytes();
  for (const TensorSpec& spec : model_tensor_specs(model->config())) {
    int64_t bytes = shape_numel(spec.shape) * 2;
    (spec.name.find(".experts.") != std::string::npos ? result.expert_bytes_total
                                                      : result.other_bytes_total) += bytes;
  }
  if (!result.report) return result;
  result.prefill_seconds = timings.prefill_seconds;
  result.decode_seconds = timings.decode_seconds;
  // The groups step together, so rank 0's times are everyone's; its token counts are its group's.
  timings.prefill_tokens = o.batch_size * o.input_len;
  timings.decode_tokens = o.batch_size * (o.output_len - 1);
  result.prefill_tokens_per_second = timings.prefill_tokens / timings.prefill_seconds;
  // The first output token comes from the prefill; decode steps make the rest.
  result.decode_tokens_per_second =
      timings.decode_seconds > 0 ? timings.decode_tokens / timings.decode_seconds : 0.0;
  result.peak_rss_bytes = peak_rss_bytes();
  return result;
}

}  // namespace epserve
