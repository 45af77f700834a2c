#include "server/parallel_flags.h"

#include <spdlog/spdlog.h>

#include <string>
#include <vector>

#include "comm/launcher.h"
#include "core/error.h"

namespace epserve {

void add_parallel_flags(CLI::App& sub, ParallelOptions& o) {
  sub.add_option("--tp-size,--tp,--tensor-parallel-size", o.tp_size,
                 "World size: ranks (attention heads are split over them); default: the "
                 "largest of --ep-size and --dp-size");
  sub.add_option("--ep-size,--ep,--expert-parallel-size", o.ep_size,
                 "Expert-parallel size (must divide the world)");
  sub.add_option("--dp-size,--dp,--data-parallel-size", o.dp_size,
                 "Attention data-parallel groups (with --enable-dp-attention)");
  sub.add_flag("--enable-dp-attention", o.enable_dp_attention,
               "Attention data-parallel: each group of W / dp ranks serves its own requests with "
               "its own KV cache; MoE layers still span all ranks");
  sub.add_option("--moe-dense-tp-size", o.moe_dense_tp_size,
                 "1: dense layers whole on every rank (default: split like the heads)");
  sub.add_flag("--enable-dp-lm-head", o.enable_dp_lm_head,
               "Split the LM head's vocabulary over the attention group (needs DP attention)");
  sub.add_option("--moe-a2a-backend", o.moe_a2a_backend,
                 "none (expert outputs summed over ranks) or deepep (token dispatch/combine; "
                 "sets ep = W)");
  sub.add_option("--deepep-mode", o.deepep_mode, "auto, normal or low_latency");
  sub.add_option("--nnodes", o.nnodes, "Number of nodes");
  sub.add_option("--node-rank", o.node_rank, "This node's index");
  sub.add_option("--dist-init-addr,--nccl-init-addr", o.dist_init_addr,
                 "HOST:PORT of node 0's rendezvous store (default: a free loopback port)");
  sub.add_option("--dist-timeout", o.dist_timeout_seconds,
                 "Seconds a rank waits for another before giving up (default 60; SGLang: none)");
  sub.add_option("--init-expert-location", o.init_expert_location,
                 "trivial, or a JSON file/string with physical_to_logical_map or logical_count");
  sub.add_option("--ep-num-redundant-experts", o.ep_num_redundant_experts,
                 "Extra physical expert slots (replicas) in total");
  sub.add_option("--ep-dispatch-algorithm", o.ep_dispatch_algorithm,
                 "static (a fixed replica per sending rank), dynamic (a random replica per "
                 "token) or fake (random routing: perfect balance, changes outputs)");
  sub.add_flag("--enable-two-batch-overlap", o.enable_two_batch_overlap,
               "Two-batch overlap: split each batch in two micro-batches and run one's MoE "
               "dispatch/combine while the other computes (needs --moe-a2a-backend deepep); by "
               "default (EPSERVE_TBO_POLICY=auto) a step is split only across nodes with enough "
               "rows per expert, EPSERVE_TBO_POLICY=always splits as SGLang does");
  sub.add_option("--tbo-token-distribution-threshold", o.tbo_token_distribution_threshold,
                 "Split one prompt in two when the best split by sequences leaves either "
                 "micro-batch under this share of the tokens (default 0.48)");
  sub.add_option(
      "--trace-file", o.trace_file,
      "Write a Chrome/Perfetto trace JSON of the forward passes here (per rank: "
      "compute and communication spans per micro-batch; kept in memory until the job ends: for "
      "short runs)");
  sub.add_option("--quantization", o.quantization,
                 "The checkpoint's quantization method (fp8 or compressed-tensors); read from "
                 "config.json when absent. Online quantization is not implemented");
}

void add_expert_flags(CLI::App& sub, ExpertRuntimeOptions& x, RecorderDump dump) {
  sub.add_flag("--enable-eplb", x.enable_eplb, "Rebalance the experts every N forward passes");
  sub.add_option("--eplb-algorithm", x.eplb_algorithm,
                 "auto, deepseek[_hierarchical|_global] or minmax[_hierarchical|_global]");
  sub.add_option("--eplb-rebalance-num-iterations", x.eplb.rebalance_num_iterations,
                 "Forward passes between rebalances");
  sub.add_option("--eplb-rebalance-layers-per-chunk", x.eplb.layers_per_chunk,
                 "Layers moved per forward pass (default: all)");
  sub.add_option("--expert-distribution-recorder-mode", x.recorder_mode,
                 "stat, stat_approx, per_pass or per_token");
  sub.add_option("--expert-distribution-recorder-buffer-size", x.recorder_buffer_size,
                 "Passes the stat buffer keeps (-1: all; default: the rebalance interval)");
  sub.add_flag("--enable-expert-distribution-metrics", x.enable_metrics,
               "Balancedness of every pass (summed over ranks) in the log and the results");
  if (dump == RecorderDump::kNone) return;
  sub.add_option("--expert-distribution-recorder-dir", x.recorder_dir,
                 "Folder of the dumps (default: $EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR, "
                 "$SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, /tmp)");
  sub.add_option("--expert-distribution-recorder-format", x.recorder_format,
                 "json, pt (torch.load) or both");
}

namespace {

void check_offline_expert_flags(const ExpertRuntimeOptions& x, const char* command) {
  if (x.recorder_mode.empty()) return;
  // bench-one-batch may record alone: that measures what recording costs.
  const bool bench = std::string(command) == "bench-one-batch";
  EPS_CHECK(bench || x.enable_eplb || x.enable_metrics,
            "--expert-distribution-recorder-mode: `epserve {}` has no "
            "/dump_expert_distribution_record; here the recorder only feeds --enable-eplb and "
            "--enable-expert-distribution-metrics (record and dump with `epserve serve`)",
            command);
  EPS_CHECK(x.recorder_mode == "stat" || x.recorder_mode == "stat_approx",
            "--expert-distribution-recorder-mode {}: `epserve {}` cannot dump its records; use "
            "stat or stat_approx here, or record with `epserve serve`",
            x.recorder_mode, command);
}

}  // namespace

void refuse_not_implemented(const std::vector<std::string>& missing) {
  if (missing.empty()) return;
  std::string list;
  for (size_t i = 0; i < missing.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == missing.size() ? " and " : ", ") + missing[i];
  }
  EPS_THROW("{} {} not implemented in this build of epserve yet", list,
            missing.size() == 1 ? "is" : "are");
}

void resolve_offline_flags(ParallelOptions& parallel, ExpertRuntimeOptions* experts,
                           const char* command) {
  parallel.resolve();
  refuse_not_implemented(parallel.not_implemented());
  if (!is_rank_process()) {
    for (const std::string& note : parallel.notes) spdlog::info("{}", note);
  }
  if (experts == nullptr) return;
  experts->resolve(parallel);
  check_offline_expert_flags(*experts, command);
}

}  // namespace epserve
