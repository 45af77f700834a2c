#include "ep/expert_location.h"

#include <algorithm>

#include "core/error.h"
#include "core/splitmix.h"

namespace epserve::ep {

ExpertLocation ExpertLocation::trivial(int num_layers, int num_logical, int num_physical,
                                       int ep_size) {
  EPS_CHECK(num_layers > 0 && num_logical > 0, "expert location needs layers ({}) and experts ({})",
            num_layers, num_logical);
  std::vector<int32_t> physical_to_logical(static_cast<size_t>(num_layers) * num_physical);
  for (size_t i = 0; i < physical_to_logical.size(); ++i) {
    physical_to_logical[i] = static_cast<int32_t>(i % num_physical % num_logical);
  }
  return from_physical_to_logical(num_logical, ep_size, num_physical,
                                  std::move(physical_to_logical));
}

ExpertLocation ExpertLocation::from_physical_to_logical(int num_logical, int ep_size,
                                                        int num_physical,
                                                        std::vector<int32_t> physical_to_logical,
                                                        std::vector<int32_t> ordered_replicas,
                                                        int width) {
  EPS_CHECK(num_physical > 0 && ep_size > 0 && num_physical % ep_size == 0,
            "{} physical experts do not split evenly over ep_size {}", num_physical, ep_size);
  EPS_CHECK(!physical_to_logical.empty() && physical_to_logical.size() % num_physical == 0,
            "physical_to_logical holds {} entries, not a multiple of {} physical experts",
            physical_to_logical.size(), num_physical);
  ExpertLocation location;
  location.num_layers_ = static_cast<int>(physical_to_logical.size() / num_physical);
  location.num_logical_ = num_logical;
  location.num_physical_ = num_physical;
  location.ep_size_ = ep_size;
  location.physical_to_logical_ = std::move(physical_to_logical);
  location.build(std::move(ordered_replicas), width);
  return location;
}

void ExpertLocation::build(std::vector<int32_t> ordered_replicas, int width) {
  const int L = num_layers_, E = num_logical_, P = num_physical_;
  EPS_CHECK(E > 0 && P >= E, "expert location: {} physical experts cannot hold {} logical ones", P,
            E);
  replica_count_.assign(static_cast<size_t>(L) * E, 0);
  for (int l = 0; l < L; ++l) {
    for (int p = 0; p < P; ++p) {
      int32_t e = physical_to_logical_[static_cast<size_t>(l) * P + p];
      EPS_CHECK(e >= 0 && e < E,
                "physical_to_logical_map[{}][{}] = {} is not a logical expert "
                "id in [0, {})",
                l, p, e, E);
      ++replica_count_[static_cast<size_t>(l) * E + e];
    }
    for (int e = 0; e < E; ++e) {
      EPS_CHECK(replica_count_[static_cast<size_t>(l) * E + e] > 0,
                "physical_to_logical_map layer {} has no slot for logical expert {}", l, e);
    }
  }
  max_replicas_ = *std::max_element(replica_count_.begin(), replica_count_.end());
  logical_to_all_physical_.assign(replica_count_.size() * max_replicas_, -1);
  std::vector<int32_t> filled(replica_count_.size(), 0);
  if (ordered_replicas.empty()) {
    for (int l = 0; l < L; ++l) {
      for (int p = 0; p < P; ++p) {
        size_t row =
            static_cast<size_t>(l) * E + physical_to_logical_[static_cast<size_t>(l) * P + p];
        logical_to_all_physical_[row * max_replicas_ + filled[row]++] = p;
      }
    }
    return;
  }
  EPS_CHECK(ordered_replicas.size() == replica_count_.size() * width,
            "logical_to_all_physical_map holds {} entries, expected {} layers x {} experts x {}",
            ordered_replicas.size(), L, E, width);
  for (size_t row = 0; row < replica_count_.size(); ++row) {
    const int l = static_cast<int>(row / E), e = static_cast<int>(row % E);
    for (int k = 0; k < width; ++k) {
      int32_t p = ordered_replicas[row * width + k];
      if (p == -1) continue;
      EPS_CHECK(p >= 0 && p < P && physical_to_logical_[static_cast<size_t>(l) * P + p] == e &&
                    filled[row] < replica_count_[row],
                "logical_to_all_physical_map[{}][{}] lists slot {}, which does not hold expert {}"
                " in physical_to_logical_map (or is listed twice)",
                l, e, p, e);
      logical_to_all_physical_[row * max_replicas_ + filled[row]++] = p;
    }
    EPS_CHECK(filled[row] == replica_count_[row],
              "logical_to_all_physical_map[{}][{}] lists {} slots, physical_to_logical_map has {}",
              l, e, filled[row], replica_count_[row]);
  }
}

ExpertLocation ExpertLocation::with_layers(const ExpertLocation& update,
                                           std::span<const int> layers) const {
  EPS_CHECK(update.num_layers_ == num_layers_ && update.num_logical_ == num_logical_ &&
                update.num_physical_ == num_physical_ && update.ep_size_ == ep_size_,
            "expert location update has {} layers x {} experts x {} slots over ep {}, the map "
            "has {} x {} x {} over ep {}",
            update.num_layers_, update.num_logical_, update.num_physical_, update.ep_size_,
            num_layers_, num_logical_, num_physical_, ep_size_);
  std::vector<bool> take(num_layers_, false);
  for (int l : layers) {
    EPS_CHECK(l >= 0 && l < num_layers_, "layer {} is outside [0, {})", l, num_layers_);
    take[l] = true;
  }
  // Keep each source's replica order: rebuild from both tables at the wider width.
  const int width = std::max(max_replicas_, update.max_replicas_);
  const size_t rows = static_cast<size_t>(num_layers_) * num_logical_;
  std::vector<int32_t> ordered(rows * width, -1);
  ExpertLocation out = *this;
  for (int l = 0; l < num_layers_; ++l) {
    const ExpertLocation& src = take[l] ? update : *this;
    if (take[l]) {
      std::copy_n(src.physical_to_logical_.data() + static_cast<size_t>(l) * num_physical_,
                  num_physical_,
                  out.physical_to_logical_.data() + static_cast<size_t>(l) * num_physical_);
    }
    for (int e = 0; e < num_logical_; ++e) {
      std::span<const int32_t> replicas = src.logical_to_all_physical(l, e);
      std::copy(replicas.begin(), replicas.end(),
                ordered.begin() + (static_cast<size_t>(l) * num_logical_ + e) * width);
    }
  }
  out.build(std::move(ordered), width);
  return out;
}

bool ExpertLocation::same_layer(const ExpertLocation& other, int layer) const {
  std::span<const int32_t> a = layer_physical_to_logical(layer);
  std::span<const int32_t> b = other.layer_physical_to_logical(layer);
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

std::vector<int32_t> static_dispatch_row(const ExpertLocation& location, int layer, int ep_rank) {
  EPS_CHECK(ep_rank >= 0 && ep_rank < location.ep_size(), "ep_rank {} is outside [0, {})", ep_rank,
            location.ep_size());
  const int E = location.num_logical();
  std::vector<int32_t> row(E);
  std::vector<int> holder_ranks;
  for (int e = 0; e < E; ++e) {
    std::span<const int32_t> replicas = location.logical_to_all_physical(layer, e);
    int32_t choice = -1;
    holder_ranks.clear();
    for (int32_t p : replicas) {
      int rank = location.rank_of_physical(p);
      if (rank == ep_rank && choice < 0) choice = p;
      if (std::find(holder_ranks.begin(), holder_ranks.end(), rank) == holder_ranks.end()) {
        holder_ranks.push_back(rank);
      }
    }
    if (choice < 0) {
      // This rank's position among the ranks that hold no replica, dealt round-robin.
      int below = static_cast<int>(std::count_if(holder_ranks.begin(), holder_ranks.end(),
                                                 [&](int r) { return r < ep_rank; }));
      const size_t n = replicas.size();
      const size_t offset = (static_cast<size_t>(layer) * E + e) % n;
      choice = replicas[(offset + static_cast<size_t>(ep_rank - below)) % n];
    }
    row[e] = choice;
  }
  return row;
}

std::vector<int32_t> static_dispatch_table(const ExpertLocation& location, int ep_rank) {
  const int L = location.num_layers(), E = location.num_logical();
  std::vector<int32_t> table;
  table.reserve(static_cast<size_t>(L) * E);
  for (int l = 0; l < L; ++l) {
    std::vector<int32_t> row = static_dispatch_row(location, l, ep_rank);
    table.insert(table.end(), row.begin(), row.end());
  }
  return table;
}

void logical_to_physical_static(std::span<const int32_t> layer_dispatch_row,
                                std::span<const int32_t> topk_logical,
                                std::span<int32_t> topk_physical) {
  EPS_CHECK(topk_logical.size() == topk_physical.size(),
            "static dispatch: {} logical ids but room for {} physical ids", topk_logical.size(),
            topk_physical.size());
  for (size_t i = 0; i < topk_logical.size(); ++i) {
    topk_physical[i] = layer_dispatch_row[topk_logical[i]];
  }
}

void logical_to_physical_dynamic(const ExpertLocation& location, int layer, uint64_t seed,
                                 std::span<const int32_t> topk_logical,
                                 std::span<int32_t> topk_physical) {
  EPS_CHECK(topk_logical.size() == topk_physical.size(),
            "dynamic dispatch: {} logical ids but room for {} physical ids", topk_logical.size(),
            topk_physical.size());
  for (size_t i = 0; i < topk_logical.size(); ++i) {
    std::span<const int32_t> replicas = location.logical_to_all_physical(layer, topk_logical[i]);
    uint64_t draw = splitmix64(seed ^ splitmix64(i));
    topk_physical[i] = replicas[draw % replicas.size()];
  }
}

}  // namespace epserve::ep
