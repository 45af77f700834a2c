#include "eplb/weight_migration.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

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

// The three matrices of an expert as one owned buffer: gate, up, down back to back.
struct ExpertBuffer {
  std::shared_ptr<uint8_t[]> bytes;
  size_t matrix_bytes = 0;
};

void check_contiguous(const GatedMlp& mlp, DType dtype, size_t matrix_bytes) {
  for (const Linear* l : {&mlp.gate_proj(), &mlp.up_proj(), &mlp.down_proj()}) {
    const WeightView& v = l->view();
    EPS_CHECK(v.dtype == dtype && v.row_stride == v.cols &&
                  static_cast<size_t>(v.rows * v.cols) * dtype_size(v.dtype) == matrix_bytes,
              "expert weights are not whole {} matrices of {} bytes (live EPLB moves BF16/F32 "
              "experts only)",
              dtype_name(dtype), matrix_bytes);
  }
}

GatedMlp mlp_of(const ExpertBuffer& buffer, const GatedMlp& like) {
  auto tensor = [&](int index, const Linear& shape_of) {
    const WeightView& v = shape_of.view();
    void* data = buffer.bytes.get() + index * buffer.matrix_bytes;
    return Linear::of(Tensor(v.dtype, {v.rows, v.cols}, data, buffer.bytes));
  };
  return GatedMlp::of(tensor(0, like.gate_proj()), tensor(1, like.up_proj()),
                      tensor(2, like.down_proj()));
}

void copy_expert(const GatedMlp& src, const ExpertBuffer& dst) {
  const Linear* parts[3] = {&src.gate_proj(), &src.up_proj(), &src.down_proj()};
  for (int i = 0; i < 3; ++i) {
    std::memcpy(dst.bytes.get() + i * dst.matrix_bytes, parts[i]->view().data, dst.matrix_bytes);
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
  std::string error;
  try {
    for (size_t k = 0; k < layers.size(); ++k) {
      const LayerMove& move = layers[k];
      EPS_CHECK(move.experts != nullptr && move.experts->num_experts() > 0,
                "layer {} has no local experts to migrate", move.layer);
      const GatedMlp& first = move.experts->expert(0);
      const WeightView& v = first.gate_proj().view();
      const size_t matrix_bytes = static_cast<size_t>(v.rows * v.cols) * dtype_size(v.dtype);
      for (int e = 0; e < move.experts->num_experts(); ++e) {
        check_contiguous(move.experts->expert(e), v.dtype, matrix_bytes);
      }
      auto add = [&](int local) {
        ExpertBuffer b;
        b.matrix_bytes = matrix_bytes;
        b.bytes = std::shared_ptr<uint8_t[]>(new uint8_t[3 * matrix_bytes]);
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
  world.set_context("EPLB expert weight exchange");
  for (size_t k = 0; k < layers.size(); ++k) {
    for (const auto& r : layers[k].plan.recvs) {
      ExpertBuffer& b = buffer_of(k, r.dst_local);
      requests.push_back(world.irecv(r.peer, b.bytes.get(), 3 * b.matrix_bytes, r.tag));
      stats.slots_received += 1;
      stats.bytes_received += static_cast<int64_t>(3 * b.matrix_bytes);
    }
  }
  for (size_t k = 0; k < layers.size(); ++k) {
    for (const auto& s : layers[k].plan.sends) {
      const GatedMlp& mlp = layers[k].experts->expert(s.src_local);
      const void* rows[3] = {mlp.gate_proj().view().data, mlp.up_proj().view().data,
                             mlp.down_proj().view().data};
      const WeightView& v = mlp.gate_proj().view();
      const size_t matrix_bytes = static_cast<size_t>(v.rows * v.cols) * dtype_size(v.dtype);
      requests.push_back(world.isend_rows(s.peer, rows, 3, matrix_bytes, s.tag));
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
        copy_expert(move.experts->expert(c.src_local), b);
        stats.slots_copied_locally += 1;
      }
      for (auto& [local, b] : buffers[k]) staged[k].emplace_back(local, mlp_of(b, like));
      for (const auto& a : move.plan.aliases) {
        staged[k].emplace_back(a.dst_local, mlp_of(buffer_of(k, a.from_local), like));
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
