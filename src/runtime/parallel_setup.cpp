#include "runtime/parallel_setup.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "comm/communicator.h"
#include "core/thread_pool.h"
#include "ep/dispatcher.h"
#include "eplb/expert_location_io.h"
#include "io/model_config.h"
#include "runtime/pass_trace.h"

namespace epserve {
namespace {

constexpr bool kDefaultLowLatencyExpand = false;

// EPSERVE_LOW_LATENCY_LAYOUT: the low-latency receive layout. "expand" is DeepEP's (the receiver
// copies each (token, slot) row into [local experts, capacity x ranks, hidden]); "rows" (the
// default) lets the experts read their input rows in place, without that copy
// (DispatchConfig::low_latency_expand; docs/benchmarks.md, "Two-batch overlap").
bool low_latency_expand_from_env() {
  const char* v = std::getenv("EPSERVE_LOW_LATENCY_LAYOUT");
  if (!v || !*v) return kDefaultLowLatencyExpand;
  EPS_CHECK(std::strcmp(v, "rows") == 0 || std::strcmp(v, "expand") == 0,
            "EPSERVE_LOW_LATENCY_LAYOUT='{}' must be 'rows' or 'expand'", v);
  return std::strcmp(v, "expand") == 0;
}

}  // namespace

RankContext setup_rank(const ParallelOptions& o, const std::string& model_dir) {
  o.validate();
  RankContext ctx;
  ctx.info = rank_info_from_env();
  const int w = o.world_size();
  EPS_CHECK(ctx.info.world_size == w, "rank started with world size {} but the flags say {}",
            ctx.info.world_size, w);
  if (is_rank_process()) ThreadPool::set_global_threads(ctx.info.num_threads);
  resolve_quantization_flag(load_quant_config(model_dir), o.quantization);
  ctx.parallel.ep_dispatch_algorithm =
      o.ep_dispatch_algorithm == "dynamic" ? EpDispatchAlgorithm::kDynamic
      : o.ep_dispatch_algorithm == "fake"  ? EpDispatchAlgorithm::kFake
                                           : EpDispatchAlgorithm::kStatic;
  ctx.parallel.two_batch_overlap = o.enable_two_batch_overlap;
  ctx.parallel.tbo_token_distribution_threshold = o.tbo_token_distribution_threshold;
  if (w == 1) return ctx;

  CommOptions comm_options;
  comm_options.timeout = std::chrono::seconds(o.dist_timeout_seconds);
  ctx.world = Communicator::create_world(ctx.info, comm_options);
  const int groups = o.attention_groups();
  const int group_size = w / groups;
  ctx.dp_rank = ctx.world->rank() / group_size;
  std::shared_ptr<Communicator> group = ctx.world->split(ctx.dp_rank, ctx.world->rank());
  ctx.leader = group->rank() == 0;

  ModelParallel& p = ctx.parallel;
  p.world = ctx.world;
  p.attention_group = group;
  p.attention_heads = Shard{group->rank(), group->size()};
  p.dense_mlp = o.moe_dense_tp_size == 1 ? Shard{} : p.attention_heads;
  p.vocab_parallel_lm_head = o.enable_dp_lm_head;
  if (groups > 1) ctx.leaders = ctx.world->split(ctx.leader ? 0 : -1, ctx.world->rank());
  p.ep_size = o.ep_size;
  p.moe_tp_size = w / o.ep_size;
  p.ep_rank = ctx.world->rank() / p.moe_tp_size;
  p.moe_tp_rank = ctx.world->rank() % p.moe_tp_size;
  p.moe_a2a_backend = o.moe_a2a_backend == "deepep" ? MoeA2aBackend::kDeepep : MoeA2aBackend::kNone;
  p.deepep_mode = o.deepep_mode == "normal"        ? DeepepMode::kNormal
                  : o.deepep_mode == "low_latency" ? DeepepMode::kLowLatency
                                                   : DeepepMode::kAuto;
  p.num_max_dispatch_tokens_per_rank = num_max_dispatch_tokens_per_rank_from_env();

  ModelConfig config = load_model_config(model_dir);
  if (config.moe.num_experts > 0) {
    eplb::ExpertLocationOptions lo;
    lo.num_layers = config.num_layers;
    lo.num_logical = config.moe.num_experts;
    lo.num_physical = config.moe.num_experts + o.ep_num_redundant_experts;
    lo.ep_size = o.ep_size;
    lo.num_groups = config.moe.n_group > 1 ? config.moe.n_group : 0;
    lo.num_nodes = o.nnodes;
    ctx.moe = std::make_shared<MoeContext>(std::make_shared<const ep::ExpertLocation>(
        eplb::expert_location_from_init(o.init_expert_location, lo)));
    if (p.moe_a2a_backend == MoeA2aBackend::kDeepep) {
      DispatchConfig dc;
      dc.hidden = config.hidden_size;
      dc.num_topk = config.moe.top_k;
      dc.num_physical_experts = ctx.moe->location()->num_physical();
      dc.num_max_dispatch_tokens_per_rank = p.num_max_dispatch_tokens_per_rank;
      dc.low_latency_expand = low_latency_expand_from_env();
      ctx.moe->normal_dispatcher = make_dispatcher(DispatchMode::kNormal, *ctx.world, dc);
      ctx.moe->low_latency_dispatcher = make_dispatcher(DispatchMode::kLowLatency, *ctx.world, dc);
    }
  }
  return ctx;
}

int launch_or_run(const ParallelOptions& o, const std::function<int()>& rank_main) {
  o.validate();
  const int w = o.world_size();
  if (w > 1 && !is_rank_process()) {
    LaunchOptions launch;
    launch.world_size = w;
    launch.nnodes = o.nnodes;
    launch.node_rank = o.node_rank;
    launch.dist_init_addr = o.dist_init_addr;
    const int code = run_launcher(launch);
    if (!o.trace_file.empty()) merge_rank_traces(o.trace_file, w);
    return code;
  }
  try {
    return rank_main();
  } catch (const PeerFailure& e) {
    std::fprintf(stderr, "epserve: %s\n", e.what());
    return kExitPeerFailure;
  }
}

}  // namespace epserve
