// What this build of epserve can run. resolve_server_args() accepts every valid SGLang setting;
// this file refuses, with one line each, the valid settings whose implementation has not landed
// yet, so that none is silently ignored. Delete a check when its feature lands.
#include "core/error.h"
#include "server/server_args.h"

namespace epserve {

namespace {

void not_yet(bool asked, const char* what) {
  EPS_CHECK(!asked, "{} is not implemented in this build of epserve yet", what);
}

}  // namespace

void check_supported(const ServerArgs& a) {
  not_yet(a.device == "cuda", "--device cuda (the CUDA backend)");
  not_yet(a.world_size > 1, "more than one rank (--tp-size/--ep-size/--dp-size > 1)");
  not_yet(a.nnodes > 1, "--nnodes > 1 (multi-node serving)");
  not_yet(a.enable_dp_attention, "--enable-dp-attention");
  not_yet(a.moe_dense_tp_size > 1, "--moe-dense-tp-size > 1");
  not_yet(a.enable_dp_lm_head, "--enable-dp-lm-head");
  not_yet(a.moe_a2a_backend == "deepep", "--moe-a2a-backend deepep");
  not_yet(a.enable_two_batch_overlap, "--enable-two-batch-overlap");
  not_yet(a.enable_eplb, "--enable-eplb");
  not_yet(a.ep_num_redundant_experts > 0, "--ep-num-redundant-experts");
  not_yet(a.init_expert_location != "trivial", "--init-expert-location other than trivial");
  not_yet(!a.ep_dispatch_algorithm.empty() && a.ep_dispatch_algorithm != "static",
          "--ep-dispatch-algorithm dynamic/fake");
  not_yet(!a.expert_distribution_recorder_mode.empty(), "--expert-distribution-recorder-mode");
  not_yet(a.enable_expert_distribution_metrics, "--enable-expert-distribution-metrics");
  not_yet(a.disaggregation_mode != "null", "--disaggregation-mode prefill/decode");
}

}  // namespace epserve
