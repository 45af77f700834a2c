#include "eplb/weight_migration.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "comm/communicator.h"
#include "core/error.h"
#include "model/moe.h"

namespace epserve::eplb {
namespace {

// The first slot of `ep_rank`'s range in `row` holding `expert`, as a local index; -1 if none.
int local_slot_holding(std::span<const int32_t> row, int ep_rank, int slots, int32_t expert) {
  for (int i = 0; i < slots; ++i) {
    if (row[static_cast<size_t>(ep_rank) * slots + i] == expert) return i;
  }
  return -1;
}

enum class Source { kUnchanged, kLocal, kAlias, kRemote };

// Where world rank `dst` gets the expert of its local slot `i` from (and which peer/slot).
Source source_of(std::span<const int32_t> old_row, std::span<const int32_t> new_row,
                 const MigrationLayout& layout, int dst, int i, int* peer, int* slot) {
  const int S = layout.slots_per_ep_rank();
  const int ep = layout.ep_rank_of(dst);
  const int p = ep * S + i;
  const int32_t expert = new_row[p];
  if (old_row[p] == expert) return Source::kUnchanged;
  if ((*slot = local_slot_holding(old_row, ep, S, expert)) >= 0) return Source::kLocal;
  for (int j = 0; j < i; ++j) {
    if (new_row[ep * S + j] == expert) {
      *slot = j;
      return Source::kAlias;
    }
  }
  // Holders in the old placement; those on dst's node first.
  std::vector<int> same_node, other;
  for (int q = 0; q < layout.world_size; ++q) {
    if (local_slot_holding(old_row, layout.ep_rank_of(q), S, expert) < 0) continue;
    (layout.node_of(q) == layout.node_of(dst) ? same_node : other).push_back(q);
  }
  const std::vector<int>& holders = same_node.empty() ? other : same_node;
  EPS_CHECK(!holders.empty(), "expert {} is in no slot of the old placement", expert);
  *peer = holders[static_cast<size_t>(dst + expert) % holders.size()];
  *slot = local_slot_holding(old_row, layout.ep_rank_of(*peer), S, expert);
  return Source::kRemote;
}

// The matrices of an expert (gate, up, down) as one owned buffer: each matrix's stored values,
// then its scales for block-scaled formats (the scales travel with their weights), each part
// starting at a multiple of 64 bytes.
struct ExpertParts {
  std::array<std::span<const uint8_t>, 6> parts;  // values, scales of gate, up, down
};

ExpertParts parts_of(const GatedMlp& mlp) {
  ExpertParts out;
  const Linear* m[3] = {&mlp.gate_proj(), &mlp.up_proj(), &mlp.down_proj()};
  for (int i = 0; i < 3; ++i) {
    auto [values, scales] = m[i]->stored_bytes();
    out.parts[2 * i] = values;
    out.parts[2 * i + 1] = scales;
  }
  return out;
}

struct ExpertLayout {
  std::array<size_t, 6> sizes{};
  std::array<size_t, 6> offsets{};
  size_t total = 0;
  bool dense = true;  // no scales: the three matrices are sent as they are, without packing
};

ExpertLayout layout_of(const GatedMlp& mlp) {
  ExpertLayout l;
  ExpertParts p = parts_of(mlp);
  for (int i = 0; i < 6; ++i) {
    l.offsets[i] = l.total;
    l.sizes[i] = p.parts[i].size();
    l.total += (l.sizes[i] + 63) / 64 * 64;
    if (i % 2 == 1 && l.sizes[i] > 0) l.dense = false;
  }
  return l;
}

struct ExpertBuffer {
  std::shared_ptr<uint8_t[]> bytes;
};

void check_same_layout(const GatedMlp& mlp, const GatedMlp& first, const ExpertLayout& layout) {
  ExpertLayout l = layout_of(mlp);
  const Linear* a[3] = {&mlp.gate_proj(), &mlp.up_proj(), &mlp.down_proj()};
  const Linear* b[3] = {&first.gate_proj(), &first.up_proj(), &first.down_proj()};
  bool same = l.sizes == layout.sizes;
  for (int i = 0; i < 3; ++i) {
    same = same && a[i]->view().format == b[i]->view().format &&
           a[i]->view().dtype == b[i]->view().dtype && a[i]->view().rows == b[i]->view().rows &&
           a[i]->view().cols == b[i]->view().cols;
  }
  EPS_CHECK(same, "the local experts of a layer are not stored alike (formats or sizes differ)");
}

GatedMlp mlp_of(const ExpertBuffer& buffer, const GatedMlp& like, const ExpertLayout& layout) {
  auto linear = [&](int index, const Linear& shape_of) {
    const WeightView& v = shape_of.view();
    uint8_t* values = buffer.bytes.get() + layout.offsets[2 * index];
    if (v.format == WeightFormat::kDense) {
      return Linear::of(Tensor(v.dtype, {v.rows, v.cols}, values, buffer.bytes));
    }
    uint8_t* scales = buffer.bytes.get() + layout.offsets[2 * index + 1];
    return Linear::of(
        v, Tensor(DType::U8, {static_cast<int64_t>(layout.sizes[2 * index])}, values, buffer.bytes),
        Tensor(DType::U8, {static_cast<int64_t>(layout.sizes[2 * index + 1])}, scales,
               buffer.bytes));
  };
  return GatedMlp::of(linear(0, like.gate_proj()), linear(1, like.up_proj()),
                      linear(2, like.down_proj()));
}

void copy_expert(const GatedMlp& src, uint8_t* dst, const ExpertLayout& layout) {
  ExpertParts p = parts_of(src);
  for (int i = 0; i < 6; ++i) {
    if (layout.sizes[i] > 0)
      std::memcpy(dst + layout.offsets[i], p.parts[i].data(), layout.sizes[i]);
  }
}

// True on every rank when some rank voted `failed`.
bool any_failed(Communicator& world, bool failed, const char* step) {
  int64_t flag = failed ? 1 : 0;
  world.set_context(std::string("EPLB vote after ") + step);
  world.allreduce(&flag, 1, ReduceOp::kMax);
  return flag != 0;
}

}  // namespace

LayerMigration plan_layer_migration(std::span<const int32_t> old_row,
                                    std::span<const int32_t> new_row, const MigrationLayout& layout,
                                    int world_rank, int tag_base) {
  EPS_CHECK(old_row.size() == static_cast<size_t>(layout.num_physical) &&
                new_row.size() == old_row.size(),
            "migration rows hold {} and {} slots, expected {}", old_row.size(), new_row.size(),
            layout.num_physical);
  EPS_CHECK(layout.ep_size > 0 && layout.num_physical % layout.ep_size == 0 &&
                layout.world_size % layout.ep_size == 0 && layout.num_nodes > 0 &&
                layout.world_size % layout.num_nodes == 0,
            "migration layout: {} slots, ep {}, world {}, nodes {} do not split evenly",
            layout.num_physical, layout.ep_size, layout.world_size, layout.num_nodes);
  const int S = layout.slots_per_ep_rank();
  LayerMigration plan;
  for (int dst = 0; dst < layout.world_size; ++dst) {
    for (int i = 0; i < S; ++i) {
      int peer = -1, slot = -1;
      Source source = source_of(old_row, new_row, layout, dst, i, &peer, &slot);
      const int tag = tag_base + layout.ep_rank_of(dst) * S + i;
      if (dst == world_rank) {
        if (source == Source::kLocal) plan.copies.push_back({i, slot});
        if (source == Source::kAlias) plan.aliases.push_back({i, slot});
        if (source == Source::kRemote) plan.recvs.push_back({i, peer, tag});
      } else if (source == Source::kRemote && peer == world_rank) {
        plan.sends.push_back({slot, dst, tag});
      }
    }
  }
  return plan;
}

std::optional<StagedChunk> migrate_chunk(const std::vector<LayerMove>& layers, Communicator& world,
                                         MigrationStats& stats, const MigrationFault& fault) {
  // 1. Allocate the new weights of every changing slot.
  std::vector<std::vector<std::pair<int, ExpertBuffer>>> buffers(layers.size());
  std::vector<ExpertLayout> layouts(layers.size());
  std::string error;
  try {
    for (size_t k = 0; k < layers.size(); ++k) {
      const LayerMove& move = layers[k];
      EPS_CHECK(move.experts != nullptr && move.experts->num_experts() > 0,
                "layer {} has no local experts to migrate", move.layer);
      const GatedMlp& first = move.experts->expert(0);
      layouts[k] = layout_of(first);
      for (int e = 0; e < move.experts->num_experts(); ++e) {
        check_same_layout(move.experts->expert(e), first, layouts[k]);
      }
      auto add = [&](int local) {
        ExpertBuffer b;
        b.bytes = std::shared_ptr<uint8_t[]>(new uint8_t[layouts[k].total]);
        buffers[k].emplace_back(local, std::move(b));
      };
      for (const auto& c : move.plan.copies) add(c.dst_local);
      for (const auto& r : move.plan.recvs) add(r.dst_local);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty())
    spdlog::warn("EPLB: rank {} cannot stage the new experts: {}", world.rank(), error);
  if (any_failed(world, !error.empty(), "allocating the new experts")) return std::nullopt;

  // 2. Exchange: every receive is posted before any send.
  auto buffer_of = [&](size_t k, int local) -> ExpertBuffer& {
    for (auto& [slot, b] : buffers[k]) {
      if (slot == local) return b;
    }
    EPS_THROW("no staging buffer for local slot {}", local);
  };
  std::vector<Request> requests;
  std::vector<std::shared_ptr<uint8_t[]>> send_buffers;  // packed experts, alive until sent
  world.set_context("EPLB expert weight exchange");
  for (size_t k = 0; k < layers.size(); ++k) {
    for (const auto& r : layers[k].plan.recvs) {
      ExpertBuffer& b = buffer_of(k, r.dst_local);
      requests.push_back(world.irecv(r.peer, b.bytes.get(), layouts[k].total, r.tag));
      stats.slots_received += 1;
      stats.bytes_received += static_cast<int64_t>(layouts[k].total);
    }
  }
  for (size_t k = 0; k < layers.size(); ++k) {
    for (const auto& s : layers[k].plan.sends) {
      const GatedMlp& mlp = layers[k].experts->expert(s.src_local);
      const ExpertLayout& layout = layouts[k];
      if (layout.dense && layout.sizes[0] % 64 == 0 && layout.sizes[0] == layout.sizes[2] &&
          layout.sizes[0] == layout.sizes[4]) {
        // BF16/F32 matrices of equal, 64-byte multiple sizes: sent in place.
        const void* rows[3] = {mlp.gate_proj().view().data, mlp.up_proj().view().data,
                               mlp.down_proj().view().data};
        requests.push_back(world.isend_rows(s.peer, rows, 3, layout.sizes[0], s.tag));
      } else {
        std::shared_ptr<uint8_t[]> packed(new uint8_t[layout.total]());
        copy_expert(mlp, packed.get(), layout);
        requests.push_back(world.isend(s.peer, packed.get(), layout.total, s.tag));
        send_buffers.push_back(std::move(packed));
      }
      stats.slots_sent += 1;
    }
  }
  world.wait_all(requests, "EPLB expert weight exchange");

  // 3. Local copies and the MLPs over the new buffers.
  StagedChunk staged(layers.size());
  try {
    for (size_t k = 0; k < layers.size(); ++k) {
      const LayerMove& move = layers[k];
      const GatedMlp& like = move.experts->expert(0);
      for (const auto& c : move.plan.copies) {
        const ExpertBuffer& b = buffer_of(k, c.dst_local);
        copy_expert(move.experts->expert(c.src_local), b.bytes.get(), layouts[k]);
        stats.slots_copied_locally += 1;
      }
      for (auto& [local, b] : buffers[k])
        staged[k].emplace_back(local, mlp_of(b, like, layouts[k]));
      for (const auto& a : move.plan.aliases) {
        staged[k].emplace_back(a.dst_local, mlp_of(buffer_of(k, a.from_local), like, layouts[k]));
        stats.slots_aliased += 1;
      }
    }
    if (fault && fault()) EPS_THROW("injected failure (test hook)");
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty())
    spdlog::warn("EPLB: rank {} failed to stage the new experts: {}", world.rank(), error);
  if (any_failed(world, !error.empty(), "staging the new experts")) return std::nullopt;
  return staged;
}

}  // namespace epserve::eplb
