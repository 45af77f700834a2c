#include "runtime/rank_main.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <variant>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "comm/communicator.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "ep/expert_location.h"
#include "kernels/cpu/cpu_features.h"
#include "model/causal_lm.h"
#include "model/memory_plan.h"
#include "runtime/control_plane.h"
#include "runtime/group_runner.h"
#include "runtime/ipc.h"
#include "runtime/kv_send_queue.h"
#include "runtime/pass_trace.h"
#include "runtime/protocol.h"

namespace epserve {
namespace {

// SGLang's default static memory fraction for small devices; on a CPU host the rest is left to
// the weights' page cache, the OS and other processes.
constexpr double kDefaultMemFraction = 0.5;
// How long an idle scheduler waits for a message before looking again (and, under DP
// attention, before agreeing with the other groups that nobody has work).
constexpr int kIdlePollMs = 20;
// Under DP attention, how long a group that must stop waits for its own shutdown message.
constexpr int kShutdownWaitMs = 10000;

int64_t mem_total_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  while (meminfo >> key >> kb) {
    if (key == "MemTotal:") return kb * 1024;
    meminfo.ignore(256, '\n');
  }
  return int64_t{8} << 30;
}

// The weight bytes this rank holds: every tensor in the files (their own dtypes), with the routed
// experts counted only for the rank's own slots (num_physical / ep_size of the num_logical
// experts' bytes).
int64_t rank_weight_bytes(const CausalLM& model) {
  const ModelConfig& c = model.config();
  const ModelParallel& p = model.parallel();
  double experts = 0, other = 0;
  for (const std::string& name : model.weights().names()) {
    double n = static_cast<double>(model.weights().nbytes(name));
    (name.find(".experts.") != std::string::npos ? experts : other) += n;
  }
  // MLA's transposed W_uk of a block-scaled kv_b_proj (attention_mla.cpp), for this rank's heads.
  other += mla_absorb_copy_bytes(c, p.attention_heads.begin(c.num_heads),
                                 p.attention_heads.end(c.num_heads));
  if (c.moe.num_experts <= 0) return static_cast<int64_t>(experts + other);
  const auto& location = model.moe_context().location();
  int num_physical = location ? location->num_physical() : c.moe.num_experts;
  double held = static_cast<double>(num_physical) / std::max(1, p.ep_size) / c.moe.num_experts;
  return static_cast<int64_t>(other + experts * held);
}

void send(IpcSocket& socket, const FrontendMessage& message) {
  socket.send(encode(message));
}

}  // namespace

int64_t kv_slots_for_memory(double mem_fraction_static, int num_local_ranks, int64_t weight_bytes,
                            int64_t bytes_per_slot) {
  double fraction = mem_fraction_static > 0 ? mem_fraction_static : kDefaultMemFraction;
  double budget = fraction * static_cast<double>(mem_total_bytes()) / std::max(1, num_local_ranks) -
                  static_cast<double>(weight_bytes);
  EPS_CHECK(budget > bytes_per_slot,
            "--mem-fraction-static {} leaves no memory for the KV cache after {} MiB of weights",
            fraction, weight_bytes >> 20);
  return static_cast<int64_t>(budget / static_cast<double>(bytes_per_slot));
}

int run_rank(const RankOptions& o) {
  set_log_level(o.log_level);
  use_sglang_log_format(fmt::format(" TP{}", rank_info_from_env().rank));
  RankContext ctx = setup_rank(o.parallel, o.model_path);
  if (o.parallel.enable_dp_attention) {
    use_sglang_log_format(fmt::format(" DP{} TP{}", ctx.dp_rank, ctx.info.rank));
  }
  if (o.num_threads > 0) ThreadPool::set_global_threads(o.num_threads);
  // The leader reports loading progress to the frontend, which draws a progress bar.
  IpcContext context;
  IpcSocket outbox(context, IpcSocket::Kind::kPush);
  ModelLoadOptions load = ctx.model_load();
  // Across nodes the frontend takes only CURVE clients holding the job's key (runtime/ipc.h).
  const bool secured = control_plane_over_tcp(o.parallel);
  ControlPlaneEndpoints frontend;
  if (ctx.leader) {
    frontend = find_control_plane(o.ipc_base, o.parallel.attention_groups(), ctx.info,
                                  std::chrono::seconds(60));
    if (secured) outbox.secure_as_client(ctx.info.store_secret);
    outbox.connect(frontend.out);
    load.on_layer_loaded = [&](int done, int total) {
      send(outbox, ControlOutput{0,
                                 {{"load_progress", {{"done", done}, {"total", total}}},
                                  {"dp_rank", ctx.dp_rank}}});
    };
  }
  auto model = load_causal_lm(o.model_path, load);
  auto trace =
      make_pass_trace(*model, o.parallel.trace_file, ctx.info.rank, o.parallel.world_size());
  int64_t bytes_per_slot =
      static_cast<int64_t>(KvCache::bytes_per_slot(model->config().num_layers, model->kv_layout()));
  int64_t slots = o.max_total_tokens > 0
                      ? o.max_total_tokens
                      : kv_slots_for_memory(o.mem_fraction_static, ctx.info.local_world_size,
                                            rank_weight_bytes(*model), bytes_per_slot);
  // --max-total-tokens is the server's capacity: DP attention groups share it.
  if (o.max_total_tokens > 0) slots = std::max<int64_t>(1, slots / o.parallel.attention_groups());
  slots = std::max(slots, o.scheduler.page_size);
  std::unique_ptr<ExpertRuntime> experts = make_expert_runtime(*model, ctx, o.parallel, o.experts);
  // PD disaggregation: every rank of a group registers its KV cache; the leader gathers the
  // group's descriptions (in group rank order) for the frontend.
  const bool disaggregated = o.scheduler.disaggregation_mode != "null";
  std::unique_ptr<KvTransferAgent> kv_agent;
  std::unique_ptr<KvSendQueue> kv_sends;  // the agent's calls, on a thread of their own
  std::vector<std::string> kv_ranks;
  // The agent comes first: a decode rank's KV cache lives in memory it allocates.
  KvAllocator allocate_kv;
  if (disaggregated) {
    EPS_CHECK(o.kv_agent_factory, "--disaggregation-mode needs a KV transfer agent");
    kv_agent = o.kv_agent_factory();
    allocate_kv = [&](size_t bytes) { return kv_agent->allocate_kv(bytes); };
  }
  auto start_kv_agent = [&](KvCache& cache) {
    KvMemory memory;
    for (int64_t l = 0; l < model->config().num_layers; ++l) {
      memory.k.push_back(cache.k(l));
      if (cache.layout().v_width > 0) memory.v.push_back(cache.v(l));
    }
    memory.num_slots = cache.num_slots();
    memory.k_width = cache.layout().k_width;
    memory.v_width = cache.layout().v_width;
    memory.mla = model->config().is_mla();
    memory.num_kv_heads = model->config().num_kv_heads;
    memory.head_dim = model->config().head_dim;
    memory.group_rank = model->parallel().attention_heads.rank;
    memory.group_size = model->parallel().attention_heads.size;
    kv_agent->attach(memory);
    Communicator* group = ctx.parallel.attention_group.get();
    std::string mine = kv_agent->describe().dump();
    if (group == nullptr || group->size() == 1) {
      kv_ranks = {mine};
      return;
    }
    kv_ranks = gather_answers(*group, mine, "exchanging KV transfer descriptions");
  };
  // The leader's KV tasks on every rank of the group: start a send, poll the finished ones, ask
  // which decode ranks failed sends may still write into (kv_send_queue.h).
  auto run_kv_task = [&](const std::string& payload) -> std::string {
    nlohmann::json job = nlohmann::json::parse(payload);
    if (!kv_sends) kv_sends = std::make_unique<KvSendQueue>(*kv_agent);
    if (job.contains("draining")) return nlohmann::json{{"draining", kv_sends->draining()}}.dump();
    if (job.contains("poll"))
      return nlohmann::json{{"done", to_json_list(kv_sends->take_done())}}.dump();
    if (job.contains("cancel")) {
      kv_sends->cancel(job["cancel"].get<int64_t>());
      return "{}";
    }
    kv_sends->start(job.at("start").get<int64_t>(), job.at("target"),
                    job.at("slots").get<std::vector<int32_t>>());
    return "{}";
  };
  if (!ctx.leader) {
    FollowerHooks hooks;
    hooks.on_control = [&](int64_t code) {
      if (experts) experts->run_command(code);
    };
    if (disaggregated) {
      hooks.allocate_kv = allocate_kv;
      hooks.on_start = start_kv_agent;
      hooks.on_task = run_kv_task;
      hooks.on_stop = [&] { kv_sends.reset(); };
    }
    run_group_follower(*model, slots, *ctx.parallel.attention_group, hooks);
    return 0;
  }
  GroupLeaderRunner runner(*model, slots, ctx.parallel.attention_group, allocate_kv);
  // A send in flight reads the runner's KV cache: it ends before the cache goes, on any path.
  struct StopSendsFirst {
    std::unique_ptr<KvSendQueue>& sends;
    ~StopSendsFirst() { sends.reset(); }
  } stop_sends_first{kv_sends};
  Scheduler scheduler(runner, o.scheduler);
  if (disaggregated) {
    start_kv_agent(runner.cache());
    scheduler.set_kv_async_sender(
        [&](int64_t id, const nlohmann::json& target, const std::vector<int32_t>& src) {
          runner.run_task(nlohmann::json{{"start", id}, {"target", target}, {"slots", src}}.dump(),
                          run_kv_task);
        },
        [&, group_sends = std::make_shared<KvGroupSends>()] {
          return group_sends->add_answers(runner.run_task(R"({"poll": true})", run_kv_task));
        },
        [&](int64_t id) {
          runner.run_task(nlohmann::json{{"cancel", id}}.dump(), run_kv_task);
        });
    scheduler.set_kv_drain_check([&] {
      std::vector<std::string> peers;
      for (const std::string& answer : runner.run_task(R"({"draining": true})", run_kv_task)) {
        nlohmann::json a = nlohmann::json::parse(answer, nullptr, false);
        EPS_CHECK(a.is_object() && a.contains("draining"), "a rank answered {}", answer);
        for (const auto& p : a["draining"]) peers.push_back(p.get<std::string>());
      }
      return peers;
    });
  }
  const int dp_rank = ctx.dp_rank;

  IpcSocket inbox(context, IpcSocket::Kind::kPull);
  if (secured) inbox.secure_as_client(ctx.info.store_secret);
  inbox.connect(frontend.in[dp_rank]);

  send(outbox, ControlOutput{0,
                             {{"ready", true},
                              {"dp_rank", dp_rank},
                              {"max_total_num_tokens", scheduler.max_total_tokens()},
                              {"page_size", o.scheduler.page_size},
                              {"kv_pages", scheduler.max_total_tokens() / o.scheduler.page_size},
                              {"kv_bytes", runner.cache().bytes()},
                              {"context_length", scheduler.context_length()},
                              {"disaggregation_mode", o.scheduler.disaggregation_mode},
                              {"kv_ranks", [&] {
                                 nlohmann::json ranks = nlohmann::json::array();
                                 for (const auto& r : kv_ranks)
                                   ranks.push_back(nlohmann::json::parse(r));
                                 return ranks;
                               }()}}});
  spdlog::info("rank ready: {} KV slots ({:.1f} MiB), context length {}",
               scheduler.max_total_tokens(), runner.cache().bytes() / 1048576.0,
               scheduler.context_length());
  if (dp_rank == 0) spdlog::info("{}", kernel_paths_summary());

  std::vector<TokenOutput> outputs;
  // Recorder commands wait here until every group's leader has them (they are collective).
  struct PendingCommand {
    int64_t code;
    uint64_t id;
  };
  std::deque<PendingCommand> commands;
  int64_t commands_received = 0, commands_run = 0;
  auto run_commands = [&](int64_t upto) {
    for (; commands_run < upto; ++commands_run) {
      PendingCommand c = std::move(commands.front());
      commands.pop_front();
      runner.send_control(c.code);
      send(outbox, ControlOutput{c.id, experts->run_command(c.code)});
    }
  };
  bool shutdown = false;
  uint64_t shutdown_id = 0;
  // Handles one message from the frontend.
  auto handle = [&](SchedulerMessage message) {
    if (auto* input = std::get_if<GenerateInput>(&message)) {
      scheduler.add(std::move(*input), outputs);
    } else if (auto* abort = std::get_if<AbortInput>(&message)) {
      scheduler.abort(abort->rid, outputs);
    } else if (auto* disagg = std::get_if<DisaggInput>(&message)) {
      scheduler.disagg(*disagg, outputs);
    } else {
      const ControlInput& control = std::get<ControlInput>(message);
      const std::string& command = control.command;
      nlohmann::json result;
      if (command == "shutdown") {
        shutdown = true;
        shutdown_id = control.id;
        return;
      } else if (command == "flush_cache") {
        result = {{"ok", scheduler.flush_cache()}};
      } else if (command == "get_stats") {
        result = scheduler.stats_json();
        if (experts) result.update(experts->stats());
      } else if (int64_t code = expert_command_code(command); code != 0) {
        if (!experts || o.experts.recorder_mode.empty()) {
          result = {{"error",
                     "the expert distribution recorder is off: start the server with "
                     "--expert-distribution-recorder-mode stat|stat_approx|per_pass|per_token"},
                    {"status", 400}};
        } else {
          commands.push_back({code, control.id});
          ++commands_received;
          return;
        }
      } else {
        result = {{"error", "unknown command " + command}};
      }
      send(outbox, ControlOutput{control.id, std::move(result)});
    }
  };
  auto drain = [&](int wait_ms) {
    ipc_poll(inbox, -1, std::chrono::milliseconds(wait_ms));
    while (std::optional<std::string> bytes = inbox.receive()) {
      if (bytes->empty()) continue;  // the frontend's wake-up: another DP group got work
      handle(decode_scheduler_message(*bytes));
    }
  };
  // Under DP attention: whether some group had work at the last agreement. An idle group then
  // runs the next step at once (with an empty batch) instead of waiting for messages first:
  // the busy groups' MoE layers wait for it.
  bool others_busy = false;
  while (true) {
    // Take every message waiting; block briefly only when no group has anything to compute.
    // (While KV sends are in flight, poll them every millisecond.)
    drain(scheduler.has_work() || others_busy ? 0 : scheduler.sending_kv() ? 1 : kIdlePollMs);
    // What the messages produced goes out before the step: a decode server's first token (the
    // prefill server's) reaches the client now, not with the token the step samples.
    if (!outputs.empty()) {
      send(outbox, OutputBatch{std::move(outputs)});
      outputs.clear();
    }
    bool stop = shutdown;
    if (ctx.leaders) {
      // DP attention: the groups' MoE layers span all ranks, so while any group has work every
      // group runs the step (an idle one with an empty batch); and they stop together.
      // Recorder commands run once every leader has them (the fewest any leader received).
      int64_t flags[3] = {scheduler.has_work() ? 1 : 0, shutdown ? 1 : 0, -commands_received};
      ctx.leaders->set_context("agreeing on the next step");
      ctx.leaders->allreduce(flags, 3, ReduceOp::kMax);
      stop = flags[1] != 0;
      others_busy = flags[0] != 0;
      if (!stop) run_commands(-flags[2]);
      if (!stop && flags[0]) scheduler.step(outputs, /*must_forward=*/true);
    } else if (!stop) {
      run_commands(commands_received);
      if (scheduler.has_work()) scheduler.step(outputs);
    }
    if (stop) {
      // The frontend tells every group to shut down; wait (briefly) for our own message so it
      // gets its reply, then abort what is left and leave.
      for (int waited = 0; !shutdown && waited < kShutdownWaitMs; waited += kIdlePollMs) {
        drain(kIdlePollMs);
      }
      scheduler.abort("", outputs);
    }
    if (!stop) scheduler.poll_disagg(outputs);
    for (DisaggOutput& d : scheduler.take_disagg_outputs()) {
      d.dp_rank = dp_rank;  // the group that reserved the slots, whatever became of the request
      send(outbox, std::move(d));
    }
    if (!outputs.empty()) {
      send(outbox, OutputBatch{std::move(outputs)});
      outputs.clear();
    }
    if (stop) {
      // Recorder commands that not every group received never run: answer them.
      for (const PendingCommand& c : commands) {
        send(outbox,
             ControlOutput{c.id, {{"error", "the server is shutting down"}, {"status", 503}}});
      }
      if (shutdown) {
        send(outbox, ControlOutput{shutdown_id, {{"ok", true}}});
      }
      return 0;
    }
  }
}

}  // namespace epserve
