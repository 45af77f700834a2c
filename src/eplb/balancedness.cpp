#include "eplb/balancedness.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace epserve::eplb {

std::vector<double> rank_loads(std::span<const double> logical_load,
                               std::span<const int32_t> physical_to_logical, int num_gpus) {
  const size_t num_physical = physical_to_logical.size();
  EPS_CHECK(num_gpus > 0 && num_physical % num_gpus == 0,
            "{} slots do not split evenly over {} ranks", num_physical, num_gpus);
  std::vector<int> replicas(logical_load.size(), 0);
  for (int32_t e : physical_to_logical) {
    EPS_CHECK(e >= 0 && static_cast<size_t>(e) < logical_load.size(),
              "slot names logical expert {} of {}", e, logical_load.size());
    ++replicas[e];
  }
  const size_t slots_per_gpu = num_physical / num_gpus;
  std::vector<double> loads(num_gpus, 0.0);
  for (size_t p = 0; p < num_physical; ++p) {
    int32_t e = physical_to_logical[p];
    loads[p / slots_per_gpu] += logical_load[e] / replicas[e];
  }
  return loads;
}

double balancedness_of_rank_loads(std::span<const double> loads) {
  if (loads.empty()) return 1.0;
  double total = std::accumulate(loads.begin(), loads.end(), 0.0);
  double max_load = *std::max_element(loads.begin(), loads.end());
  return (total / loads.size() + 1e-5) / (max_load + 1e-5);
}

double layer_balancedness(std::span<const double> logical_load,
                          std::span<const int32_t> physical_to_logical, int num_gpus) {
  return balancedness_of_rank_loads(rank_loads(logical_load, physical_to_logical, num_gpus));
}

std::vector<double> balancedness_per_layer(const ExpertLoad& load, const Placement& placement,
                                           int num_gpus) {
  EPS_CHECK(load.num_layers == placement.num_layers && load.num_logical == placement.num_logical,
            "expert load is {} layers x {} experts but the placement is {} x {}", load.num_layers,
            load.num_logical, placement.num_layers, placement.num_logical);
  std::vector<double> out(load.num_layers);
  for (int l = 0; l < load.num_layers; ++l) {
    out[l] = layer_balancedness(load.layer(l), placement.layer_physical_to_logical(l), num_gpus);
  }
  return out;
}

double mean_balancedness(std::span<const double> per_layer) {
  if (per_layer.empty()) return 1.0;
  return std::accumulate(per_layer.begin(), per_layer.end(), 0.0) / per_layer.size();
}

}  // namespace epserve::eplb
