#include "runtime/parallel_options.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "model/tbo_split.h"

namespace epserve {

int ParallelOptions::world_size() const {
  if (tp_size > 0) return tp_size;
  return std::max(ep_size, std::max(dp_size, 1));
}

int ParallelOptions::attention_groups() const {
  if (!enable_dp_attention) return 1;
  return dp_size > 0 ? dp_size : world_size();
}

void ParallelOptions::resolve() {
  EPS_CHECK(tp_size >= 0 && ep_size >= 1 && dp_size >= 0,
            "--tp-size, --ep-size and --dp-size must be positive");
  const int w = world_size();
  tp_size = w;
  if (moe_a2a_backend == "deepep" && ep_size != w) {
    // SGLang does the same: the DeepEP dispatcher spreads the experts over every rank.
    notes.push_back(
        fmt::format("--moe-a2a-backend deepep spreads the experts over every rank: "
                    "ep_size {} (not {})",
                    w, ep_size));
    ep_size = w;
  }
  if (enable_dp_attention && dp_size == 0) {
    // SGLang would turn DP attention off here (its dp_size defaults to 1).
    dp_size = w;
    notes.push_back(fmt::format(
        "--enable-dp-attention without --dp-size: {} attention groups of 1 rank (dp = the world "
        "size; SGLang would run without DP attention here, pass --dp-size to choose)",
        w));
  }
  if (dp_size == 0) dp_size = 1;
  if (enable_dp_attention && dp_size == 1) enable_dp_attention = false;  // as SGLang
  validate();
  if (enable_two_batch_overlap) {
    // Read (and check) the split rule now, not at the first forward pass, and say it: under
    // the default rule a one-node job never splits (model/tbo_split.h).
    const TboPolicy policy = tbo_policy_from_env();
    notes.push_back(
        policy.always
            ? std::string("two-batch overlap: EPSERVE_TBO_POLICY=always, every step SGLang "
                          "would split is split")
            : fmt::format("two-batch overlap: EPSERVE_TBO_POLICY=auto splits a step only when "
                          "the job spans nodes and each micro-batch gives every routed expert "
                          ">= {} rows (EPSERVE_TBO_MIN_ROWS_PER_EXPERT){}; "
                          "EPSERVE_TBO_POLICY=always splits as SGLang does",
                          policy.min_rows_per_expert,
                          nnodes == 1 ? ", so this one-node job runs without splitting" : ""));
  }
}

void ParallelOptions::validate() const {
  const int w = world_size();
  EPS_CHECK(tp_size >= 0 && ep_size >= 1 && dp_size >= 0,
            "--tp-size, --ep-size and --dp-size must be positive");
  EPS_CHECK(w % ep_size == 0, "--ep-size {} must divide the world size {} (--tp-size)", ep_size, w);
  EPS_CHECK(moe_a2a_backend == "none" || moe_a2a_backend == "deepep",
            "--moe-a2a-backend '{}' is not one of none, deepep", moe_a2a_backend);
  EPS_CHECK(deepep_mode == "auto" || deepep_mode == "normal" || deepep_mode == "low_latency",
            "--deepep-mode '{}' is not one of auto, normal, low_latency", deepep_mode);
  EPS_CHECK(moe_a2a_backend != "deepep" || ep_size == w,
            "--moe-a2a-backend deepep needs --ep-size equal to the world size {} (SGLang sets "
            "ep_size = tp_size for it)",
            w);
  EPS_CHECK(nnodes >= 1, "--nnodes {} must be at least 1", nnodes);
  EPS_CHECK(node_rank >= 0 && node_rank < nnodes, "--node-rank {} is outside 0..{} (--nnodes {})",
            node_rank, nnodes - 1, nnodes);
  EPS_CHECK(w % nnodes == 0, "the world size {} (--tp-size) must be a multiple of --nnodes {}", w,
            nnodes);
  EPS_CHECK(nnodes == 1 || !dist_init_addr.empty(),
            "--nnodes {} needs --dist-init-addr HOST:PORT (node 0's address)", nnodes);
  EPS_CHECK(dist_timeout_seconds > 0, "--dist-timeout {} must be positive", dist_timeout_seconds);
  EPS_CHECK(ep_num_redundant_experts >= 0, "--ep-num-redundant-experts {} is negative",
            ep_num_redundant_experts);
  EPS_CHECK(ep_num_redundant_experts == 0 || ep_size > 1,
            "--ep-num-redundant-experts needs --ep-size greater than 1");
  EPS_CHECK(ep_dispatch_algorithm == "static" || ep_dispatch_algorithm == "dynamic" ||
                ep_dispatch_algorithm == "fake",
            "--ep-dispatch-algorithm '{}' is not one of static, dynamic, fake",
            ep_dispatch_algorithm);
  EPS_CHECK(tbo_token_distribution_threshold >= 0 && tbo_token_distribution_threshold <= 0.5,
            "--tbo-token-distribution-threshold {} is outside [0, 0.5]",
            tbo_token_distribution_threshold);
  // SGLang's check_server_args: the overlap hides dispatch and combine, so it needs them.
  EPS_CHECK(!enable_two_batch_overlap || moe_a2a_backend != "none",
            "When enabling two batch overlap, moe_a2a_backend cannot be 'none' (add "
            "--moe-a2a-backend deepep)");
  if (enable_dp_attention) {
    EPS_CHECK(w % attention_groups() == 0,
              "--enable-dp-attention needs --tp-size ({}) divisible by --dp-size ({})", w,
              attention_groups());
  } else {
    EPS_CHECK(dp_size <= 1,
              "--dp-size {} without --enable-dp-attention asks for SGLang's plain data "
              "parallelism (independent model copies), which epserve does not implement yet; "
              "add --enable-dp-attention for attention groups inside one model",
              dp_size);
  }
  EPS_CHECK(!enable_dp_lm_head || dp_attention(),
            "--enable-dp-lm-head needs --enable-dp-attention with --dp-size above 1");
  EPS_CHECK(moe_dense_tp_size >= 0 && (moe_dense_tp_size == 0 || w % moe_dense_tp_size == 0),
            "--moe-dense-tp-size {} must divide the world size {}", moe_dense_tp_size, w);
}

std::vector<std::string> ParallelOptions::not_implemented() const {
  std::vector<std::string> missing;
  if (moe_dense_tp_size > 1) missing.push_back("--moe-dense-tp-size above 1");
  return missing;
}

}  // namespace epserve
