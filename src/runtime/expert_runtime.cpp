#include "runtime/expert_runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "comm/communicator.h"
#include "core/error.h"
#include "ep/expert_location.h"
#include "eplb/recorder_dump.h"

namespace epserve {
namespace {

constexpr int kRecordsTag = 0x7e00;
constexpr auto kBalancednessLogInterval = std::chrono::seconds(10);
constexpr int kMetricsBatch = 16;

}  // namespace

int64_t expert_command_code(const std::string& name) {
  if (name == "start_expert_distribution_record")
    return static_cast<int64_t>(ExpertCommand::kStart);
  if (name == "stop_expert_distribution_record") return static_cast<int64_t>(ExpertCommand::kStop);
  if (name == "dump_expert_distribution_record") return static_cast<int64_t>(ExpertCommand::kDump);
  return 0;
}

std::string expert_distribution_dump_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  for (const char* name :
       {"EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR", "SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return v;
  }
  return "/tmp";
}

std::unique_ptr<ExpertRuntime> make_expert_runtime(CausalLM& model, const RankContext& ctx,
                                                   const ParallelOptions& parallel,
                                                   ExpertRuntimeOptions options) {
  options.resolve(parallel);
  if (!options.active()) return nullptr;
  options.dispatcher_counts = ctx.parallel.moe_a2a_backend == MoeA2aBackend::kDeepep;
  options.eplb.num_nodes = parallel.nnodes;
  const int n_group = model.config().moe.n_group;
  options.eplb.num_groups = n_group > 1 ? n_group : 0;
  auto runtime = std::make_unique<ExpertRuntime>(model, ctx.world, std::move(options));
  const char* fault = std::getenv("EPSERVE_EPLB_FAULT");
  if (fault != nullptr && *fault != '\0' && runtime->manager() != nullptr) {
    int rank = -1;
    long long rebalance = -1, chunk = -1;
    EPS_CHECK(std::sscanf(fault, "%d:%lld:%lld", &rank, &rebalance, &chunk) == 3,
              "EPSERVE_EPLB_FAULT '{}' is not <world rank>:<rebalance>:<chunk>", fault);
    if (ctx.world && ctx.world->rank() == rank) {
      runtime->manager()->set_fault(
          [rebalance, chunk](int64_t r, int64_t c) { return r == rebalance && c == chunk; });
    }
  }
  return runtime;
}

ExpertRuntime::ExpertRuntime(CausalLM& model, std::shared_ptr<Communicator> world,
                             ExpertRuntimeOptions options)
    : model_(model),
      world_(std::move(world)),
      options_(std::move(options)),
      last_log_(std::chrono::steady_clock::now()) {
  const ModelConfig& config = model_.config();
  EPS_CHECK(config.moe.num_experts > 0,
            "the expert distribution recorder and EPLB need an MoE model; {} has no routed experts",
            config.model_type);
  eplb::RecorderShape shape;
  shape.num_layers = config.num_layers;
  shape.num_logical = config.moe.num_experts;
  const ep::ExpertLocation* location = model_.moe_context().location().get();
  shape.num_physical = location ? location->num_physical() : config.moe.num_experts;
  shape.ep_size = location ? location->ep_size() : 1;
  if (!location) {
    identity_.resize(static_cast<size_t>(shape.num_layers) * shape.num_physical);
    for (size_t i = 0; i < identity_.size(); ++i) {
      identity_[i] = static_cast<int32_t>(i % static_cast<size_t>(shape.num_physical));
    }
  }
  const eplb::RecorderMode mode = options_.recorder_mode.empty()
                                      ? eplb::RecorderMode::kStat
                                      : eplb::parse_recorder_mode(options_.recorder_mode);
  recorder_ = std::make_unique<eplb::ExpertDistributionRecorder>(
      mode, options_.recorder_buffer_size, shape, world_ ? world_->rank() : 0,
      options_.dispatcher_counts);
  if (options_.enable_eplb) {
    manager_ = std::make_unique<eplb::EplbManager>(model_, world_, options_.eplb);
  }
  // As SGLang: EPLB and the metrics need the counts from the first pass on.
  if (options_.enable_eplb || options_.enable_metrics) recorder_->start();
  model_.set_pass_observer(this);
}

ExpertRuntime::~ExpertRuntime() {
  model_.set_pass_observer(nullptr);
}

std::span<const int32_t> ExpertRuntime::physical_to_logical() const {
  const auto& location = model_.moe_context().location();
  return location ? location->all_physical_to_logical() : std::span<const int32_t>(identity_);
}

void ExpertRuntime::on_pass_begin(const ForwardBatch& batch) {
  PassState& pass = model_.moe_context().pass;
  pass.expert_sink = recorder_->recording() ? recorder_.get() : nullptr;
  recorder_->begin_pass(pass.pass_id, batch);
}

void ExpertRuntime::on_pass_end() {
  model_.moe_context().pass.expert_sink = nullptr;
  const bool recorded = recorder_->recording();
  recorder_->end_pass(physical_to_logical());
  if (options_.enable_metrics && recorded) queue_balancedness();
  if (manager_) manager_->on_pass_end(*recorder_);
}

void ExpertRuntime::queue_balancedness() {
  const std::vector<int64_t>& loads = recorder_->last_pass_rank_loads();  // [layers, ep]
  pending_loads_.insert(pending_loads_.end(), loads.begin(), loads.end());
  if (++pending_passes_ >= kMetricsBatch) flush_balancedness();
}

void ExpertRuntime::flush_balancedness() {
  if (world_) {
    // Every rank has queued the same passes (recording starts and stops at the same pass).
    int64_t count = static_cast<int64_t>(pending_loads_.size());
    int64_t check[2] = {count, -count};
    world_->set_context("summing the expert loads of the passes (expert distribution metrics)");
    world_->allreduce(check, 2, ReduceOp::kMax);
    EPS_CHECK(check[0] == -check[1], "expert metrics: ranks queued {} and {} load entries",
              check[0], -check[1]);
    if (count > 0) world_->allreduce(pending_loads_.data(), pending_loads_.size(), ReduceOp::kSum);
  }
  const int ep = recorder_->shape().ep_size;
  const size_t per_pass = static_cast<size_t>(recorder_->shape().num_layers) * ep;
  for (size_t pass = 0; pass + per_pass <= pending_loads_.size(); pass += per_pass) {
    double sum = 0;
    int layers = 0;
    for (size_t l = pass; l < pass + per_pass; l += ep) {
      const auto first = pending_loads_.begin() + static_cast<int64_t>(l);
      const int64_t max = *std::max_element(first, first + ep);
      if (max == 0) continue;  // a dense layer, or no tokens
      const double mean = static_cast<double>(std::accumulate(first, first + ep, int64_t{0})) / ep;
      sum += (mean + 1e-5) / (static_cast<double>(max) + 1e-5);
      ++layers;
    }
    if (layers == 0) continue;
    last_balancedness_ = sum / layers;
    balancedness_sum_ += last_balancedness_;
    ++balancedness_passes_;
  }
  pending_loads_.clear();
  pending_passes_ = 0;
  const auto now = std::chrono::steady_clock::now();
  if ((!world_ || world_->rank() == 0) && balancedness_passes_ > 0 &&
      now - last_log_ >= kBalancednessLogInterval) {
    last_log_ = now;
    spdlog::info("expert balancedness: {:.3f} in the last pass, {:.3f} mean over {} passes",
                 last_balancedness_, balancedness_sum_ / balancedness_passes_,
                 balancedness_passes_);
  }
}

nlohmann::json ExpertRuntime::run_command(int64_t code) {
  switch (static_cast<ExpertCommand>(code)) {
    case ExpertCommand::kStart:
      recorder_->start();
      if (manager_) manager_->restart_window();
      pending_loads_.clear();
      pending_passes_ = 0;
      balancedness_sum_ = 0;
      balancedness_passes_ = 0;
      return {{"ok", true}};
    case ExpertCommand::kStop:
      recorder_->stop();
      return {{"ok", true}};
    case ExpertCommand::kDump:
      return dump();
    case ExpertCommand::kFlushMetrics:
      if (options_.enable_metrics) flush_balancedness();
      return {{"ok", true}};
    case ExpertCommand::kRebalance:
      if (!manager_) return {{"error", "EPLB is off (--enable-eplb)"}};
      manager_->rebalance_now(*recorder_);
      return {{"ok", true}};
  }
  return {{"error", fmt::format("unknown expert distribution command {}", code)}};
}

nlohmann::json ExpertRuntime::dump() {
  const int rank = world_ ? world_->rank() : 0;
  if (options_.enable_metrics) flush_balancedness();
  int64_t rows = 0;
  std::vector<int64_t> counts = recorder_->logical_count(&rows);  // [rows, layers, logical]
  int64_t shape[2] = {rows, -rows};
  if (world_) {
    world_->set_context("dumping the expert distribution");
    world_->allreduce(shape, 2, ReduceOp::kMax);
  }
  const bool same_rows = shape[0] == -shape[1];
  if (world_ && same_rows) world_->allreduce(counts.data(), counts.size(), ReduceOp::kSum);

  // per_pass / per_token: every rank's records, gathered on world rank 0.
  nlohmann::json records = recorder_->records();
  const bool detailed = recorder_->mode() == eplb::RecorderMode::kPerPass ||
                        recorder_->mode() == eplb::RecorderMode::kPerToken;
  if (world_ && detailed) {
    std::vector<uint8_t> mine = nlohmann::json::to_cbor(records);
    std::vector<int64_t> sizes(world_->size());
    int64_t size = static_cast<int64_t>(mine.size());
    world_->allgather(&size, sizeof(size), sizes.data());
    if (rank == 0) {
      for (int r = 1; r < world_->size(); ++r) {
        std::vector<uint8_t> bytes(sizes[r]);
        world_->recv(r, bytes.data(), bytes.size(), kRecordsTag);
        for (auto& record : nlohmann::json::from_cbor(bytes)) records.push_back(std::move(record));
      }
      std::stable_sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
        return a.at("forward_pass_id").template get<int64_t>() <
               b.at("forward_pass_id").template get<int64_t>();
      });
    } else {
      world_->send(0, mine.data(), mine.size(), kRecordsTag);
    }
  }
  const int64_t passes = recorder_->num_recorded_passes();
  const double utilization =
      balancedness_passes_ > 0 ? balancedness_sum_ / balancedness_passes_ : -1.0;
  recorder_->reset();
  balancedness_sum_ = 0;
  balancedness_passes_ = 0;
  if (rank != 0) return {{"ok", true}};
  if (!same_rows) {
    return {{"error", "the ranks recorded different numbers of passes; nothing was written"}};
  }

  eplb::RecorderDump out;
  out.mode = recorder_->mode();
  out.shape = recorder_->shape();
  out.num_recorded_passes = passes;
  out.rows = rows;
  out.logical_count = std::move(counts);
  if (utilization >= 0) out.average_utilization_rate_over_window = utilization;
  if (detailed) out.records = std::move(records);
  const std::span<const int32_t> p2l = physical_to_logical();
  out.last_physical_to_logical_map.assign(p2l.begin(), p2l.end());

  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::vector<std::string> paths;
  try {
    paths = eplb::write_recorder_dump(out, expert_distribution_dump_dir(options_.recorder_dir),
                                      options_.recorder_format, std::to_string(ms));
  } catch (const Error& e) {
    return {{"error", e.what()}};
  }
  std::string written;
  for (const std::string& p : paths) written += (written.empty() ? "" : " and ") + p;
  spdlog::info("expert distribution ({} passes) written to {}", passes, written);
  return {{"ok", true}, {"path", written}, {"num_recorded_passes", passes}};
}

nlohmann::json ExpertRuntime::stats() const {
  nlohmann::json out = {{"expert_recording", recorder_->recording()}};
  if (options_.enable_metrics && balancedness_passes_ > 0) {
    out["expert_balancedness"] = last_balancedness_;
    out["expert_balancedness_mean"] = balancedness_sum_ / balancedness_passes_;
  }
  if (manager_) {
    const eplb::EplbCounters& c = manager_->counters();
    out["eplb_rebalances"] = c.rebalances;
    out["eplb_chunks_committed"] = c.chunks_committed;
    out["eplb_chunks_failed"] = c.chunks_failed;
    out["eplb_layers_moved"] = c.layers_moved;
    out["eplb_slots_received"] = c.migration.slots_received;
    out["eplb_slots_copied_locally"] = c.migration.slots_copied_locally;
  }
  return out;
}

}  // namespace epserve
