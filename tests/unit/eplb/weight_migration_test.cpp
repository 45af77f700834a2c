// plan_layer_migration: only changing slots move; an expert a rank already holds is copied
// locally; a second new slot of the same expert shares the first one's weights; every receive
// has the matching send on the peer, and the peer holds that expert in the old placement.
#include "eplb/weight_migration.h"

#include <gtest/gtest.h>

#include <random>

#include "core/error.h"

namespace epserve::eplb {
namespace {

TEST(EplbWeightMigration, UnchangedSlotsStayAndMovesGoBothWays) {
  const MigrationLayout layout{4, 2, 2, 1};
  const std::vector<int32_t> old_row = {0, 1, 2, 3}, new_row = {0, 3, 2, 1};
  LayerMigration r0 = plan_layer_migration(old_row, new_row, layout, 0, 100);
  LayerMigration r1 = plan_layer_migration(old_row, new_row, layout, 1, 100);
  ASSERT_EQ(r0.recvs.size(), 1u);
  EXPECT_EQ(r0.recvs[0].dst_local, 1);
  EXPECT_EQ(r0.recvs[0].peer, 1);
  EXPECT_EQ(r0.recvs[0].tag, 101);
  ASSERT_EQ(r1.sends.size(), 1u);
  EXPECT_EQ(r1.sends[0].src_local, 1) << "rank 1 held expert 3 in its local slot 1";
  EXPECT_EQ(r1.sends[0].peer, 0);
  EXPECT_EQ(r1.sends[0].tag, 101);
  EXPECT_TRUE(r0.copies.empty() && r1.copies.empty());
  EXPECT_EQ(r0.sends.size(), 1u);
  EXPECT_EQ(r1.recvs.size(), 1u);
}

TEST(EplbWeightMigration, HeldExpertsAreCopiedLocallyAndReplicasShareWeights) {
  const MigrationLayout layout{4, 2, 2, 1};
  LayerMigration local = plan_layer_migration(std::vector<int32_t>{0, 1, 2, 3},
                                              std::vector<int32_t>{1, 0, 2, 2}, layout, 0, 0);
  ASSERT_EQ(local.copies.size(), 2u);
  EXPECT_EQ(local.copies[0].dst_local, 0);
  EXPECT_EQ(local.copies[0].src_local, 1);
  EXPECT_TRUE(local.recvs.empty() && local.sends.empty());

  LayerMigration alias = plan_layer_migration(std::vector<int32_t>{0, 1, 2, 3},
                                              std::vector<int32_t>{3, 3, 2, 1}, layout, 0, 0);
  ASSERT_EQ(alias.recvs.size(), 1u) << "expert 3 crosses once";
  ASSERT_EQ(alias.aliases.size(), 1u);
  EXPECT_EQ(alias.aliases[0].dst_local, 1);
  EXPECT_EQ(alias.aliases[0].from_local, 0);
}

TEST(EplbWeightMigration, EveryReceiveHasItsSendOnRandomPlacements) {
  std::mt19937 rng(7);
  for (int world : {2, 4, 8}) {
    for (int ep : {2, world}) {
      const int P = 16, E = 10;
      const MigrationLayout layout{P, ep, world, world >= 4 ? 2 : 1};
      for (int trial = 0; trial < 30; ++trial) {
        // Every expert somewhere in both rows; the rest random replicas.
        auto row = [&] {
          std::vector<int32_t> r(P);
          for (int p = 0; p < P; ++p) r[p] = p < E ? p : static_cast<int32_t>(rng() % E);
          std::shuffle(r.begin(), r.end(), rng);
          return r;
        };
        const std::vector<int32_t> old_row = row(), new_row = row();
        std::vector<LayerMigration> plans;
        for (int w = 0; w < world; ++w) {
          plans.push_back(plan_layer_migration(old_row, new_row, layout, w, 0));
        }
        const int S = P / ep;
        for (int w = 0; w < world; ++w) {
          const int base = layout.ep_rank_of(w) * S;
          for (const auto& r : plans[w].recvs) {
            bool matched = false;
            for (const auto& s : plans[r.peer].sends) {
              if (s.peer != w || s.tag != r.tag) continue;
              matched = true;
              EXPECT_EQ(old_row[layout.ep_rank_of(r.peer) * S + s.src_local],
                        new_row[base + r.dst_local]);
            }
            EXPECT_TRUE(matched) << "world " << world << " ep " << ep << " rank " << w;
            EXPECT_NE(layout.ep_rank_of(r.peer), layout.ep_rank_of(w));
          }
          for (const auto& c : plans[w].copies) {
            EXPECT_EQ(old_row[base + c.src_local], new_row[base + c.dst_local]);
            EXPECT_NE(old_row[base + c.dst_local], new_row[base + c.dst_local]);
          }
          size_t sends_to_others = 0;
          for (int v = 0; v < world; ++v) {
            for (const auto& r : plans[v].recvs) sends_to_others += r.peer == w;
          }
          EXPECT_EQ(plans[w].sends.size(), sends_to_others);
        }
      }
    }
  }
}

TEST(EplbWeightMigration, BadRowsAreErrors) {
  const MigrationLayout layout{4, 2, 2, 1};
  EXPECT_THROW(plan_layer_migration(std::vector<int32_t>{0, 1, 2}, std::vector<int32_t>{0, 1, 2, 3},
                                    layout, 0, 0),
               Error);
  EXPECT_THROW(plan_layer_migration(std::vector<int32_t>{0, 1, 2, 2},
                                    std::vector<int32_t>{0, 1, 2, 3}, layout, 0, 0),
               Error)
      << "expert 3 is nowhere in the old placement";
}

}  // namespace
}  // namespace epserve::eplb
