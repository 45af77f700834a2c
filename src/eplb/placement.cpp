#include "eplb/placement.h"

#include <algorithm>
#include <array>
#include <string>

#include "core/error.h"
#include "eplb/algorithms_deepseek.h"
#include "eplb/algorithms_minmax.h"

namespace epserve::eplb {

void validate_placement_config(const PlacementConfig& c, int num_logical, bool hierarchical) {
  EPS_CHECK(num_logical > 0, "there are no logical experts to place");
  EPS_CHECK(c.num_gpus > 0, "number of GPUs must be positive, got {}", c.num_gpus);
  EPS_CHECK(c.num_nodes > 0, "number of nodes must be positive, got {}", c.num_nodes);
  EPS_CHECK(c.num_groups >= 0, "number of expert groups must not be negative, got {}",
            c.num_groups);
  EPS_CHECK(c.num_physical > 0 && c.num_physical % c.num_gpus == 0,
            "number of physical experts {} must be a positive multiple of the number of GPUs {}",
            c.num_physical, c.num_gpus);
  EPS_CHECK(c.num_physical >= num_logical,
            "number of physical experts {} is smaller than the number of logical experts {}",
            c.num_physical, num_logical);
  EPS_CHECK(c.num_gpus % c.num_nodes == 0,
            "number of GPUs {} is not divisible by the number of nodes {}", c.num_gpus,
            c.num_nodes);
  if (c.num_groups > 0) {
    EPS_CHECK(num_logical % c.num_groups == 0,
              "number of expert groups {} does not divide the number of logical experts {}",
              c.num_groups, num_logical);
  }
  if (hierarchical) {
    EPS_CHECK(c.num_groups > 0, "the hierarchical policy needs the number of expert groups");
    EPS_CHECK(c.num_groups % c.num_nodes == 0,
              "the hierarchical policy needs the number of expert groups {} to be a multiple of "
              "the number of nodes {}",
              c.num_groups, c.num_nodes);
  }
}

Placement assemble_placement(int num_logical, const std::vector<LayerPlacement>& layers) {
  Placement out;
  out.num_layers = static_cast<int>(layers.size());
  out.num_logical = num_logical;
  out.num_physical = layers.empty() ? 0 : static_cast<int>(layers[0].physical_to_logical.size());
  out.physical_to_logical.reserve(static_cast<size_t>(out.num_layers) * out.num_physical);
  out.logical_count.assign(static_cast<size_t>(out.num_layers) * num_logical, 0);
  for (int l = 0; l < out.num_layers; ++l) {
    const LayerPlacement& layer = layers[l];
    EPS_CHECK(static_cast<int>(layer.physical_to_logical.size()) == out.num_physical &&
                  layer.replica_rank.size() == layer.physical_to_logical.size(),
              "placement of layer {} has {} slots, expected {}", l,
              layer.physical_to_logical.size(), out.num_physical);
    for (int32_t e : layer.physical_to_logical) {
      EPS_CHECK(e >= 0 && e < num_logical, "placement of layer {} names logical expert {} of {}", l,
                e, num_logical);
      ++out.logical_count[static_cast<size_t>(l) * num_logical + e];
    }
    out.physical_to_logical.insert(out.physical_to_logical.end(), layer.physical_to_logical.begin(),
                                   layer.physical_to_logical.end());
  }
  for (int32_t count : out.logical_count) out.max_replicas = std::max(out.max_replicas, count);
  out.logical_to_physical.assign(out.logical_count.size() * out.max_replicas, -1);
  for (int l = 0; l < out.num_layers; ++l) {
    const LayerPlacement& layer = layers[l];
    for (int p = 0; p < out.num_physical; ++p) {
      size_t row = static_cast<size_t>(l) * num_logical + layer.physical_to_logical[p];
      int32_t rank = layer.replica_rank[p];
      EPS_CHECK(rank >= 0 && rank < out.logical_count[row],
                "placement of layer {}: slot {} has replica rank {} of {}", l, p, rank,
                out.logical_count[row]);
      int32_t& cell = out.logical_to_physical[row * out.max_replicas + rank];
      EPS_CHECK(cell == -1, "placement of layer {}: two slots with replica rank {} of expert {}", l,
                rank, layer.physical_to_logical[p]);
      cell = p;
    }
    for (int e = 0; e < num_logical; ++e) {
      EPS_CHECK(out.logical_count[static_cast<size_t>(l) * num_logical + e] > 0,
                "placement of layer {} leaves logical expert {} without a slot", l, e);
    }
  }
  return out;
}

Placement trivial_placement(int num_layers, int num_logical, int num_physical) {
  EPS_CHECK(num_logical > 0 && num_physical >= num_logical,
            "trivial placement needs at least as many physical experts ({}) as logical ({})",
            num_physical, num_logical);
  LayerPlacement layer;
  layer.physical_to_logical.resize(num_physical);
  layer.replica_rank.resize(num_physical);
  for (int p = 0; p < num_physical; ++p) {
    layer.physical_to_logical[p] = p % num_logical;
    layer.replica_rank[p] = p / num_logical;
  }
  return assemble_placement(num_logical, std::vector<LayerPlacement>(num_layers, layer));
}

namespace {

constexpr std::array<std::pair<EplbAlgorithm, std::string_view>, 7> kAlgorithmNames = {{
    {EplbAlgorithm::kAuto, "auto"},
    {EplbAlgorithm::kDeepseek, "deepseek"},
    {EplbAlgorithm::kDeepseekHierarchical, "deepseek_hierarchical"},
    {EplbAlgorithm::kDeepseekGlobal, "deepseek_global"},
    {EplbAlgorithm::kMinmax, "minmax"},
    {EplbAlgorithm::kMinmaxHierarchical, "minmax_hierarchical"},
    {EplbAlgorithm::kMinmaxGlobal, "minmax_global"},
}};

}  // namespace

EplbAlgorithm parse_eplb_algorithm(std::string_view name) {
  std::string accepted;
  for (const auto& [algorithm, algorithm_name] : kAlgorithmNames) {
    if (algorithm_name == name) return algorithm;
    accepted += accepted.empty() ? "" : ", ";
    accepted += algorithm_name;
  }
  EPS_THROW("unknown EPLB algorithm '{}'; expected one of {}", name, accepted);
}

std::string_view eplb_algorithm_name(EplbAlgorithm algorithm) {
  for (const auto& [a, name] : kAlgorithmNames) {
    if (a == algorithm) return name;
  }
  return "unknown";
}

EplbAlgorithm resolve_eplb_algorithm(EplbAlgorithm algorithm, const PlacementConfig& config) {
  const bool hierarchical = config.allows_hierarchical();
  switch (algorithm) {
    case EplbAlgorithm::kDeepseek:
      return hierarchical ? EplbAlgorithm::kDeepseekHierarchical : EplbAlgorithm::kDeepseekGlobal;
    case EplbAlgorithm::kAuto:
    case EplbAlgorithm::kMinmax:
      return hierarchical ? EplbAlgorithm::kMinmaxHierarchical : EplbAlgorithm::kMinmaxGlobal;
    default:
      return algorithm;
  }
}

Placement plan_placement(const ExpertLoad& load, const PlacementConfig& config,
                         EplbAlgorithm algorithm) {
  EPS_CHECK(load.counts.size() == static_cast<size_t>(load.num_layers) * load.num_logical,
            "expert load holds {} counts, expected {} layers x {} experts", load.counts.size(),
            load.num_layers, load.num_logical);
  switch (resolve_eplb_algorithm(algorithm, config)) {
    case EplbAlgorithm::kDeepseekHierarchical:
      return deepseek_rebalance(load, config, /*hierarchical=*/true);
    case EplbAlgorithm::kDeepseekGlobal:
      return deepseek_rebalance(load, config, /*hierarchical=*/false);
    case EplbAlgorithm::kMinmaxHierarchical:
      return minmax_rebalance(load, config, /*hierarchical=*/true);
    case EplbAlgorithm::kMinmaxGlobal:
      return minmax_rebalance(load, config, /*hierarchical=*/false);
    default:
      EPS_THROW("EPLB algorithm {} did not resolve", eplb_algorithm_name(algorithm));
  }
}

}  // namespace epserve::eplb
