// epserve bench-one-batch: SGLang's bench_one_batch — prefill and decode throughput of one batch.
#include <cstdio>

#include "cli/commands.h"
#include "core/thread_pool.h"
#include "runtime/bench_one_batch.h"

namespace epserve::cli {

Command register_bench_one_batch(CLI::App& app) {
  struct Options {
    BenchOneBatchOptions bench;
    int num_threads = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* sub =
      app.add_subcommand("bench-one-batch", "Time prefill and decode of one batch of prompts");
  sub->add_option("--model-path", o->bench.model_path)->required();
  sub->add_option("--batch-size", o->bench.batch_size)->check(CLI::PositiveNumber);
  sub->add_option("--input-len", o->bench.input_len)->check(CLI::PositiveNumber);
  sub->add_option("--output-len", o->bench.output_len)->check(CLI::PositiveNumber);
  sub->add_option("--seed", o->bench.seed);
  sub->add_option("--num-threads", o->num_threads);
  return Command{sub, [o] {
                   if (o->num_threads > 0) ThreadPool::set_global_threads(o->num_threads);
                   BenchOneBatchResult r = bench_one_batch(o->bench);
                   const auto& b = o->bench;
                   std::printf("model: %s\nbatch size %lld, input len %lld, output len %lld, "
                               "threads %d\n",
                               b.model_path.c_str(), (long long)b.batch_size,
                               (long long)b.input_len, (long long)b.output_len,
                               ThreadPool::global().num_threads());
                   std::printf("load: %.2f s\n", r.load_seconds);
                   std::printf("prefill: %.3f s, %.1f tokens/s\n", r.prefill_seconds,
                               r.prefill_tokens_per_second);
                   std::printf("decode: %.3f s, %.2f tokens/s (%.2f ms per step)\n",
                               r.decode_seconds, r.decode_tokens_per_second,
                               r.decode_seconds * 1e3 / (b.output_len > 1 ? b.output_len - 1 : 1));
                   std::printf("peak RSS: %.1f MiB\n", r.peak_rss_bytes / 1048576.0);
                   return 0;
                 }};
}

}  // namespace epserve::cli
