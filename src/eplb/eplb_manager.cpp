#include "eplb/eplb_manager.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <numeric>

#include "comm/communicator.h"
#include "core/error.h"
#include "eplb/balancedness.h"
#include "eplb/expert_location_io.h"
#include "eplb/recorder.h"
#include "model/causal_lm.h"
#include "model/moe_parallel.h"

namespace epserve::eplb {
namespace {

// Mean balancedness over the given layers of a placement for a load.
double mean_over_layers(const ExpertLoad& load, const ep::ExpertLocation& location,
                        const std::vector<int>& layers) {
  if (layers.empty()) return 1.0;
  double sum = 0;
  for (int l : layers) {
    sum += layer_balancedness(load.layer(l), location.layer_physical_to_logical(l),
                              location.ep_size());
  }
  return sum / static_cast<double>(layers.size());
}

}  // namespace

EplbManager::EplbManager(CausalLM& model, std::shared_ptr<Communicator> world, EplbOptions options)
    : model_(model), world_(std::move(world)), options_(options) {
  EPS_CHECK(world_ != nullptr && location() != nullptr,
            "--enable-eplb needs expert parallelism over several ranks (--ep-size > 1)");
  EPS_CHECK(options_.rebalance_num_iterations >= 1,
            "--eplb-rebalance-num-iterations {} must be at least 1",
            options_.rebalance_num_iterations);
  EPS_CHECK(options_.layers_per_chunk >= 0, "--eplb-rebalance-layers-per-chunk {} is negative",
            options_.layers_per_chunk);
  if (world_->rank() == 0) {
    spdlog::info("EPLB: rebalancing every {} forward passes, {} per pass",
                 options_.rebalance_num_iterations,
                 options_.layers_per_chunk > 0 ? fmt::format("{} layers", options_.layers_per_chunk)
                                               : std::string("all layers"));
  }
}

const std::shared_ptr<const ep::ExpertLocation>& EplbManager::location() const {
  return model_.moe_context().location();
}

void EplbManager::on_pass_end(ExpertDistributionRecorder& recorder) {
  ++passes_;
  if (!pending_.empty()) {
    move_next_chunk();
    return;
  }
  if (passes_ < options_.rebalance_num_iterations) return;
  plan(recorder);
  if (!pending_.empty()) move_next_chunk();
}

void EplbManager::rebalance_now(ExpertDistributionRecorder& recorder) {
  pending_.clear();
  plan(recorder);
  while (!pending_.empty()) move_next_chunk();
}

void EplbManager::plan(ExpertDistributionRecorder& recorder) {
  passes_ = 0;
  chunk_index_ = 0;
  const ep::ExpertLocation& current = *location();
  const int L = current.num_layers(), E = current.num_logical();
  // Counts of every rank, summed (integers: every rank gets exactly the same numbers).
  std::vector<int64_t> counts = recorder.logical_count_sum();
  const int64_t recorded_passes = recorder.num_recorded_passes();
  world_->set_context("EPLB: summing the expert counts");
  world_->allreduce(counts.data(), counts.size(), ReduceOp::kSum);
  recorder.reset();
  ExpertLoad load{L, E, std::vector<double>(counts.begin(), counts.end())};
  PlacementConfig config{current.num_physical(), current.ep_size(), options_.num_nodes,
                         options_.num_groups};
  ep::ExpertLocation planned = expert_location_from_placement(
      plan_placement(load, config, options_.algorithm), current.ep_size());
  std::vector<int> moe_layers, changing;
  for (int l = 0; l < L; ++l) {
    if (model_.expert_slots(l) == nullptr) continue;
    auto row = load.layer(l);
    if (std::accumulate(row.begin(), row.end(), 0.0) == 0.0) continue;  // nothing recorded
    moe_layers.push_back(l);
    if (!current.same_layer(planned, l)) changing.push_back(l);
  }
  target_ = std::make_shared<const ep::ExpertLocation>(current.with_layers(planned, changing));
  const size_t per_chunk = options_.layers_per_chunk > 0
                               ? static_cast<size_t>(options_.layers_per_chunk)
                               : std::max<size_t>(changing.size(), 1);
  for (size_t i = 0; i < changing.size(); i += per_chunk) {
    pending_.emplace_back(
        changing.begin() + static_cast<int64_t>(i),
        changing.begin() + static_cast<int64_t>(std::min(changing.size(), i + per_chunk)));
  }
  ++counters_.rebalances;
  if (world_->rank() == 0) {
    spdlog::info(
        "EPLB: rebalance {}: {} passes recorded, balancedness {:.3f} -> {:.3f} (mean over {} MoE "
        "layers with tokens); {} layers change, in {} chunk(s)",
        counters_.rebalances, recorded_passes, mean_over_layers(load, current, moe_layers),
        mean_over_layers(load, *target_, moe_layers), moe_layers.size(), changing.size(),
        pending_.size());
  }
}

void EplbManager::move_next_chunk() {
  std::vector<int> layers = std::move(pending_.front());
  pending_.pop_front();
  const int64_t rebalance = counters_.rebalances - 1, chunk = chunk_index_++;
  const auto start = std::chrono::steady_clock::now();
  const ep::ExpertLocation& current = *location();
  MigrationLayout layout{current.num_physical(), current.ep_size(), world_->size(),
                         options_.num_nodes};
  std::vector<LayerMove> moves;
  for (size_t k = 0; k < layers.size(); ++k) {
    const int l = layers[k];
    ExpertSlots* slots = model_.expert_slots(l);
    LayerMove move;
    move.layer = l;
    move.experts = &slots->experts();
    move.plan = plan_layer_migration(current.layer_physical_to_logical(l),
                                     target_->layer_physical_to_logical(l), layout, world_->rank(),
                                     static_cast<int>(k) * current.num_physical());
    moves.push_back(std::move(move));
  }
  MigrationFault fault;
  if (fault_) fault = [&] { return fault_(rebalance, chunk); };
  MigrationStats stats;
  std::optional<StagedChunk> staged = migrate_chunk(moves, *world_, stats, fault);
  if (!staged) {
    ++counters_.chunks_failed;
    const size_t abandoned = pending_.size();
    pending_.clear();
    if (world_->rank() == 0) {
      spdlog::warn(
          "EPLB: rebalance {} chunk {} failed on a rank; layers {} keep the old "
          "placement on every rank ({} later chunk(s) abandoned)",
          rebalance + 1, chunk, fmt::join(layers, ","), abandoned);
    }
    return;
  }
  model_.moe_context().set_location(
      std::make_shared<const ep::ExpertLocation>(current.with_layers(*target_, layers)));
  for (size_t k = 0; k < layers.size(); ++k) {
    model_.expert_slots(layers[k])->commit(std::move((*staged)[k]));
  }
  ++counters_.chunks_committed;
  counters_.layers_moved += static_cast<int64_t>(layers.size());
  counters_.migration.slots_copied_locally += stats.slots_copied_locally;
  counters_.migration.slots_received += stats.slots_received;
  counters_.migration.slots_sent += stats.slots_sent;
  counters_.migration.slots_aliased += stats.slots_aliased;
  counters_.migration.bytes_received += stats.bytes_received;
  if (world_->rank() == 0) {
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    spdlog::info(
        "EPLB: rebalance {} chunk {}: layers {} switched ({} slots received, {} copied "
        "locally, {} shared on rank 0) in {:.1f} ms{}",
        rebalance + 1, chunk, fmt::join(layers, ","), stats.slots_received,
        stats.slots_copied_locally, stats.slots_aliased, ms,
        pending_.empty() ? "; rebalance done" : "");
  }
}

}  // namespace epserve::eplb
