// SGLang's parallel-layout flags as one set of options, resolved and validated in one place for
// every command (serve, generate, bench-one-batch, perplexity); server/parallel_flags.h registers
// them. World size W = --tp-size, or the largest of --ep-size and --dp-size when it is absent
// (SGLang's rule). --ep-size must divide W. Without DP attention the W ranks form one attention
// group (heads split W ways); with it, dp_size groups of W / dp_size ranks.
#pragma once

#include <string>
#include <vector>

namespace epserve {

struct ParallelOptions {
  int tp_size = 0;  // 0: absent
  int ep_size = 1;
  int dp_size = 0;  // 0: absent (with --enable-dp-attention: dp = W, which epserve says at start)
  bool enable_dp_attention = false;
  int moe_dense_tp_size = 0;  // 0: absent (dense layers split like the heads); 1: whole per rank
  bool enable_dp_lm_head = false;
  std::string moe_a2a_backend = "none";  // none | deepep
  std::string deepep_mode = "auto";      // auto | normal | low_latency
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;
  int dist_timeout_seconds = 60;
  std::string init_expert_location = "trivial";
  int ep_num_redundant_experts = 0;
  std::string ep_dispatch_algorithm = "static";  // static | dynamic | fake
  // Two-batch overlap (SGLang's flags and defaults; model/tbo_split.h).
  bool enable_two_batch_overlap = false;
  double tbo_token_distribution_threshold = 0.48;
  // --trace-file: a Chrome/Perfetto trace of the forward passes (runtime/pass_trace.h).
  std::string trace_file;
  // --quantization: empty means the checkpoint's own (io/quant_config.h:
  // resolve_quantization_flag).
  std::string quantization;

  // What resolve() decided that the flags did not say (one line each, for the start-up log).
  std::vector<std::string> notes;

  int world_size() const;
  // Attention groups: dp_size with DP attention (W when --dp-size is absent), else 1. SGLang
  // turns DP attention off when dp is 1; so does epserve.
  int attention_groups() const;
  bool dp_attention() const { return attention_groups() > 1; }
  // Fills what SGLang derives (tp = W; deepep spreads the experts over every rank, ep = W;
  // --enable-dp-attention without --dp-size takes dp = W; dp 1 turns DP attention off), says so
  // in notes, then validate(). Every command calls it once on the flags it parsed.
  void resolve();
  // SGLang's consistency rules; throws epserve::Error naming the flag and what to change.
  void validate() const;
  // Valid layouts this build cannot run yet, one phrase each ("--moe-dense-tp-size above 1").
  std::vector<std::string> not_implemented() const;
};

}  // namespace epserve
