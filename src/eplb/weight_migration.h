// Moving routed-expert weights into their new slots when live EPLB changes the placement.
//
// plan_layer_migration is pure: from one layer's old and new physical_to_logical rows it says
// what one world rank does. A slot whose expert does not change is left alone; a slot that gets
// an expert its own rank already holds (in another slot, old placement) copies it locally; a
// second new slot of the same expert on the same rank reuses the first one's weights; any other
// slot receives the expert from a rank that holds it in the old placement (one on the same node
// when there is one, spread over the holders by (receiver + expert)). Ranks that hold the same
// slots (ep_size < world size) each receive their own copy. Every rank computes every rank's
// plan, so each send has its receive without any negotiation.
//
// migrate_chunk runs the plans of a chunk of layers on every rank, in three steps with a vote
// after the first and the last: allocate the new weights (owned buffers, as stored: BF16/F32,
// or block-scaled values followed by their scales),
// exchange them (point-to-point over the world communicator; a peer failing here fails the job
// as any collective does), then do the local copies. If any rank failed a step (or a test hook
// said so), every rank drops what it staged and the old placement stays in force everywhere;
// otherwise the caller commits the staged weights at the same pass on every rank.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "model/layers.h"

namespace epserve {
class Communicator;
class LocalExperts;
}  // namespace epserve

namespace epserve::eplb {

struct MigrationLayout {
  int num_physical = 0;
  int ep_size = 1;
  int world_size = 1;  // a multiple of ep_size: world_size / ep_size ranks hold the same slots
  int num_nodes = 1;

  int slots_per_ep_rank() const { return num_physical / ep_size; }
  int ep_rank_of(int world_rank) const { return world_rank / (world_size / ep_size); }
  int node_of(int world_rank) const { return world_rank / (world_size / num_nodes); }
};

struct LayerMigration {
  struct Copy {  // from this rank's own old slot
    int dst_local;
    int src_local;
  };
  struct Recv {
    int dst_local;
    int peer;  // world rank
    int tag;
  };
  struct Send {
    int src_local;
    int peer;
    int tag;
  };
  struct Alias {  // the same weights as another slot of this rank's new placement
    int dst_local;
    int from_local;
  };
  std::vector<Copy> copies;
  std::vector<Recv> recvs;
  std::vector<Send> sends;
  std::vector<Alias> aliases;
};

// Tags are tag_base + destination slot (unique per receiver and layer of a chunk).
LayerMigration plan_layer_migration(std::span<const int32_t> old_row,
                                    std::span<const int32_t> new_row, const MigrationLayout& layout,
                                    int world_rank, int tag_base);

struct LayerMove {
  int layer = 0;
  const LocalExperts* experts = nullptr;  // this rank's slots of the layer (old placement)
  LayerMigration plan;
};

struct MigrationStats {
  int64_t slots_copied_locally = 0;
  int64_t slots_received = 0;
  int64_t slots_sent = 0;
  int64_t slots_aliased = 0;
  int64_t bytes_received = 0;
};

// Per layer (in the order given), the new weights of the slots that change: (local slot, MLP).
using StagedChunk = std::vector<std::vector<std::pair<int, GatedMlp>>>;

// Test hook: returns true to make this rank fail the chunk after the exchange.
using MigrationFault = std::function<bool()>;

// Collective over `world`. nullopt when a rank failed (every rank returns nullopt then).
std::optional<StagedChunk> migrate_chunk(const std::vector<LayerMove>& layers, Communicator& world,
                                         MigrationStats& stats, const MigrationFault& fault = {});

}  // namespace epserve::eplb
