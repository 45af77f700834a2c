// epserve make-model: writes a random-weight model in the Hugging Face format.
#include <cstdio>

#include "cli/commands.h"
#include "core/thread_pool.h"
#include "model/make_model.h"

namespace epserve::cli {

Command register_make_model(CLI::App& app) {
  struct Options {
    MakeModelOptions model;
    std::string output;
    int num_threads = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "make-model", "Write a random-weight model (config.json + safetensors) in the HF format");
  sub->add_option("--arch", o->model.arch, "deepseek_v3 or qwen3_moe")
      ->check(CLI::IsMember({"deepseek_v3", "qwen3_moe"}));
  sub->add_option("--output", o->output, "Directory to write")->required();
  sub->add_option("--preset", o->model.preset, "tiny, small or bench")
      ->check(CLI::IsMember({"tiny", "small", "bench"}));
  sub->add_option("--hidden-size", o->model.hidden_size);
  sub->add_option("--num-layers", o->model.num_layers);
  sub->add_option("--num-heads", o->model.num_heads);
  sub->add_option("--num-experts", o->model.num_experts);
  sub->add_option("--top-k", o->model.top_k);
  sub->add_option("--vocab-size", o->model.vocab_size);
  sub->add_option("--intermediate-size", o->model.intermediate_size);
  sub->add_option("--moe-intermediate-size", o->model.moe_intermediate_size);
  sub->add_option("--first-k-dense-replace", o->model.first_k_dense_replace);
  sub->add_option("--init-scale", o->model.init_scale, "Scale of the random weights");
  sub->add_option("--router-skew", o->model.router_skew,
                  "Zipf-like skew of expert popularity via e_score_correction_bias (deepseek_v3)");
  sub->add_option("--seed", o->model.seed);
  sub->add_option("--quantization", o->model.quantization,
                  "fp8 (DeepSeek-V3's 128x128 block FP8, every linear layer but the router and "
                  "lm_head) or int4 (Kimi-K2-Thinking's compressed-tensors W4A16 routed experts); "
                  "BF16 when absent");
  sub->add_option("--max-shard-bytes", o->model.max_shard_bytes,
                  "Split the weights into shards of at most this many bytes");
  sub->add_option("--num-threads", o->num_threads);
  return Command{sub, [o] {
                   if (o->num_threads > 0) ThreadPool::set_global_threads(o->num_threads);
                   make_model(o->model, o->output);
                   std::printf("wrote %s model to %s\n", o->model.arch.c_str(), o->output.c_str());
                   return 0;
                 }};
}

}  // namespace epserve::cli
