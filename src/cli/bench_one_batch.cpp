// epserve bench-one-batch: SGLang's bench_one_batch — prefill and decode throughput of one batch.
#include <cstdio>

#include "cli/commands.h"
#include "core/thread_pool.h"
#include "eplb/placement.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/bench_one_batch.h"
#include "server/parallel_flags.h"

namespace epserve::cli {

namespace {

struct Options {
  BenchOneBatchOptions bench;
  int num_threads = 0;
};

int run(const Options& options) {
  if (options.num_threads > 0) ThreadPool::set_global_threads(options.num_threads);
  BenchOneBatchResult r = bench_one_batch(options.bench);
  // Every rank reports the weight pages it touched: its experts are 1/ep of the total.
  std::fprintf(stderr,
               "rank %d: resident weights %.1f MiB (model: %.1f MiB of routed experts, %.1f MiB "
               "other)\n",
               r.rank, r.resident_weight_bytes / 1048576.0, r.expert_bytes_total / 1048576.0,
               r.other_bytes_total / 1048576.0);
  if (!r.report) return 0;
  const auto& b = options.bench;
  const auto& t = r.timings;
  std::printf(
      "model: %s\nbatch size %lld, input len %lld, output len %lld, ranks %d, threads "
      "per rank %d\n",
      b.model_path.c_str(), (long long)b.batch_size, (long long)b.input_len,
      (long long)b.output_len, b.parallel.world_size(), ThreadPool::global().num_threads());
  std::printf("%s\n", kernel_paths_summary().c_str());
  std::printf("load: %.2f s\n", r.load_seconds);
  std::printf("prefill: %.3f s, %.1f tokens/s, communication %.1f%%\n", r.prefill_seconds,
              r.prefill_tokens_per_second, 100.0 * t.prefill_comm_seconds / t.prefill_seconds);
  std::printf("decode: %.3f s, %.2f tokens/s (%.2f ms per step), communication %.1f%%\n",
              r.decode_seconds, r.decode_tokens_per_second,
              r.decode_seconds * 1e3 / (b.output_len > 1 ? b.output_len - 1 : 1),
              t.decode_seconds > 0 ? 100.0 * t.decode_comm_seconds / t.decode_seconds : 0.0);
  std::printf("peak RSS (rank 0): %.1f MiB\n", r.peak_rss_bytes / 1048576.0);
  if (r.balancedness >= 0) {
    std::printf("expert balancedness (mean over the timed passes): %.3f\n", r.balancedness);
  }
  if (b.experts.enable_eplb) {
    std::printf("EPLB: %lld layers moved before the timed run\n", (long long)r.eplb_layers_moved);
  }
  return 0;
}

}  // namespace

Command register_bench_one_batch(CLI::App& app) {
  auto o = std::make_shared<Options>();
  CLI::App* sub =
      app.add_subcommand("bench-one-batch", "Time prefill and decode of one batch of prompts");
  sub->add_option("--model-path", o->bench.model_path)->required();
  sub->add_option("--batch-size", o->bench.batch_size)->check(CLI::PositiveNumber);
  sub->add_option("--input-len", o->bench.input_len)->check(CLI::PositiveNumber);
  sub->add_option("--output-len", o->bench.output_len)->check(CLI::PositiveNumber);
  sub->add_option("--seed", o->bench.seed);
  sub->add_option("--num-threads", o->num_threads);
  add_parallel_flags(*sub, o->bench.parallel);
  add_expert_flags(*sub, o->bench.experts, RecorderDump::kNone);
  return Command{sub, [o] {
                   resolve_offline_flags(o->bench.parallel, &o->bench.experts, "bench-one-batch");
                   return launch_or_run(o->bench.parallel, [o] { return run(*o); });
                 }};
}

}  // namespace epserve::cli
