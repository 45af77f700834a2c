#include "eplb/algorithms_deepseek.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace epserve::eplb {
namespace {

// The visiting order of torch.sort(weight, descending=True) on CPU: std::sort over (value, index)
// pairs with a comparator on the value only. Deliberately not std::stable_sort (see header).
std::vector<int32_t> sort_indices_descending_as_torch(std::span<const float> weight) {
  std::vector<std::pair<float, int32_t>> keyed(weight.size());
  for (size_t i = 0; i < weight.size(); ++i) keyed[i] = {weight[i], static_cast<int32_t>(i)};
  std::sort(keyed.begin(), keyed.end(),
            [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
              return a.first > b.first;
            });
  std::vector<int32_t> order(weight.size());
  for (size_t i = 0; i < keyed.size(); ++i) order[i] = keyed[i].second;
  return order;
}

std::vector<int32_t> inverse_permutation(const std::vector<int32_t>& perm) {
  std::vector<int32_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int32_t>(i);
  return inv;
}

}  // namespace

Packing deepseek_balanced_packing(std::span<const float> weight, int num_packs) {
  const int n = static_cast<int>(weight.size());
  EPS_CHECK(num_packs > 0 && n % num_packs == 0,
            "balanced packing: {} items do not split into {} packs", n, num_packs);
  const int items_per_pack = n / num_packs;
  Packing packing;
  packing.pack_index.resize(n);
  packing.rank_in_pack.assign(n, 0);
  if (items_per_pack == 1) {  // eplb.py returns the identity here without sorting
    for (int i = 0; i < n; ++i) packing.pack_index[i] = i;
    return packing;
  }
  std::vector<float> pack_weight(num_packs, 0.0f);
  std::vector<int> pack_items(num_packs, 0);
  for (int32_t item : sort_indices_descending_as_torch(weight)) {
    int best = -1;
    for (int p = 0; p < num_packs; ++p) {
      if (pack_items[p] < items_per_pack && (best < 0 || pack_weight[p] < pack_weight[best])) {
        best = p;
      }
    }
    packing.pack_index[item] = best;
    packing.rank_in_pack[item] = pack_items[best];
    pack_weight[best] += weight[item];
    ++pack_items[best];
  }
  return packing;
}

Replication deepseek_replicate_experts(std::span<const float> weight, int num_physical) {
  const int num_logical = static_cast<int>(weight.size());
  EPS_CHECK(num_physical >= num_logical, "replicate experts: {} slots for {} experts", num_physical,
            num_logical);
  Replication r;
  r.physical_to_logical.resize(num_physical);
  r.replica_rank.assign(num_physical, 0);
  r.logical_count.assign(num_logical, 1);
  for (int i = 0; i < num_logical; ++i) r.physical_to_logical[i] = i;
  for (int i = num_logical; i < num_physical; ++i) {
    int best = 0;
    float best_load = weight[0] / static_cast<float>(r.logical_count[0]);
    for (int e = 1; e < num_logical; ++e) {
      float load = weight[e] / static_cast<float>(r.logical_count[e]);
      if (load > best_load) {
        best = e;
        best_load = load;
      }
    }
    r.physical_to_logical[i] = best;
    r.replica_rank[i] = r.logical_count[best];
    ++r.logical_count[best];
  }
  return r;
}

LayerPlacement deepseek_rebalance_layer(std::span<const double> counts, int num_physical,
                                        int num_groups, int num_nodes, int num_gpus) {
  const int num_logical = static_cast<int>(counts.size());
  const int group_size = num_logical / num_groups;
  const int groups_per_node = num_groups / num_nodes;
  const int logical_per_node = num_logical / num_nodes;
  const int physical_per_node = num_physical / num_nodes;
  const int gpus_per_node = num_gpus / num_nodes;
  const int physical_per_gpu = num_physical / num_gpus;

  std::vector<float> weight(counts.begin(), counts.end());

  // Step 1: pack groups onto nodes. A "middle" logical id (mlog) numbers experts node by node.
  std::vector<float> group_weight(num_groups, 0.0f);
  for (int g = 0; g < num_groups; ++g) {
    for (int j = 0; j < group_size; ++j) group_weight[g] += weight[g * group_size + j];
  }
  Packing group_packing = deepseek_balanced_packing(group_weight, num_nodes);
  std::vector<int32_t> log2mlog(num_logical);
  for (int e = 0; e < num_logical; ++e) {
    int g = e / group_size;
    log2mlog[e] = (group_packing.pack_index[g] * groups_per_node + group_packing.rank_in_pack[g]) *
                      group_size +
                  e % group_size;
  }
  std::vector<int32_t> mlog2log = inverse_permutation(log2mlog);

  LayerPlacement out;
  out.physical_to_logical.resize(num_physical);
  out.replica_rank.resize(num_physical);
  std::vector<float> node_weight(logical_per_node);
  std::vector<float> slot_weight(physical_per_node);
  for (int node = 0; node < num_nodes; ++node) {
    // Step 2: replicate inside the node.
    for (int j = 0; j < logical_per_node; ++j) {
      node_weight[j] = weight[mlog2log[node * logical_per_node + j]];
    }
    Replication rep = deepseek_replicate_experts(node_weight, physical_per_node);

    // Step 3: pack the node's slots onto its GPUs by load per replica.
    for (int p = 0; p < physical_per_node; ++p) {
      int m = rep.physical_to_logical[p];
      slot_weight[p] = node_weight[m] / static_cast<float>(rep.logical_count[m]);
    }
    Packing gpu_packing = deepseek_balanced_packing(slot_weight, gpus_per_node);
    std::vector<int32_t> phy2pphy(physical_per_node);
    for (int p = 0; p < physical_per_node; ++p) {
      phy2pphy[p] = gpu_packing.pack_index[p] * physical_per_gpu + gpu_packing.rank_in_pack[p];
    }
    std::vector<int32_t> pphy2phy = inverse_permutation(phy2pphy);
    for (int q = 0; q < physical_per_node; ++q) {
      int phy = pphy2phy[q];
      int mlog = node * logical_per_node + rep.physical_to_logical[phy];
      out.physical_to_logical[node * physical_per_node + q] = mlog2log[mlog];
      out.replica_rank[node * physical_per_node + q] = rep.replica_rank[phy];
    }
  }
  return out;
}

Placement deepseek_rebalance(const ExpertLoad& load, const PlacementConfig& config,
                             bool hierarchical) {
  validate_placement_config(config, load.num_logical, hierarchical);
  const int num_groups = hierarchical ? config.num_groups : 1;
  const int num_nodes = hierarchical ? config.num_nodes : 1;
  std::vector<LayerPlacement> layers;
  layers.reserve(load.num_layers);
  for (int l = 0; l < load.num_layers; ++l) {
    layers.push_back(deepseek_rebalance_layer(load.layer(l), config.num_physical, num_groups,
                                              num_nodes, config.num_gpus));
  }
  return assemble_placement(load.num_logical, layers);
}

}  // namespace epserve::eplb
