#include "eplb/expert_location_io.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "core/error.h"

namespace epserve::eplb {
namespace {

using ep::ExpertLocation;

std::vector<int32_t> to_vector(std::span<const int32_t> s) {
  return {s.begin(), s.end()};
}

TEST(EplbExpertLocation, TrivialWrapsAndListsReplicasBySlot) {
  ExpertLocation loc = ExpertLocation::trivial(2, 4, 6, 3);
  EXPECT_EQ(loc.num_local_physical(), 2);
  EXPECT_EQ(loc.max_replicas(), 2);
  EXPECT_EQ(loc.physical_to_logical(1, 5), 1);
  EXPECT_EQ(loc.rank_of_physical(5), 2);
  EXPECT_EQ(to_vector(loc.logical_to_all_physical(1, 0)), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(to_vector(loc.logical_to_all_physical(1, 3)), (std::vector<int32_t>{3}));
  EXPECT_EQ(loc.replica_count(0, 2), 1);
}

TEST(EplbExpertLocation, FromPlacementKeepsThePlannerReplicaOrder) {
  ExpertLoad load{1, 12, {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86}};
  Placement placement = plan_placement(load, {16, 8, 2, 4}, EplbAlgorithm::kDeepseek);
  ExpertLocation loc = expert_location_from_placement(placement, 8);
  // DeepSeek lists replicas by creation: expert 1's extra replica went to slot 13 after its
  // original landed in slot 15.
  EXPECT_EQ(to_vector(loc.logical_to_all_physical(0, 1)), (std::vector<int32_t>{15, 13}));
  ExpertLocation by_mapping =
      ExpertLocation::from_physical_to_logical(12, 8, 16, placement.physical_to_logical);
  EXPECT_EQ(to_vector(by_mapping.logical_to_all_physical(0, 1)), (std::vector<int32_t>{13, 15}));
}

ExpertLocationOptions options(int layers, int logical, int physical, int ep) {
  ExpertLocationOptions o;
  o.num_layers = layers;
  o.num_logical = logical;
  o.num_physical = physical;
  o.ep_size = ep;
  return o;
}

TEST(EplbExpertLocation, InitFromMappingStringFileAndCounts) {
  auto o = options(1, 3, 4, 2);
  ExpertLocation from_string =
      expert_location_from_init(R"({"physical_to_logical_map": [[2, 0, 1, 0]]})", o);
  EXPECT_EQ(to_vector(from_string.logical_to_all_physical(0, 0)), (std::vector<int32_t>{1, 3}));

  std::string path = testing::TempDir() + "/eplb_init_location.json";
  std::ofstream(path) << R"({"logical_count": [[[10, 1, 1]], [[20, 1, 1]]]})";
  o.algorithm = EplbAlgorithm::kDeepseekGlobal;
  ExpertLocation from_counts = expert_location_from_init(path, o);
  EXPECT_EQ(from_counts.replica_count(0, 0), 2);  // the hot expert gets the redundant slot
  std::remove(path.c_str());

  EXPECT_EQ(expert_location_from_init("trivial", o), ExpertLocation::trivial(1, 3, 4, 2));
}

TEST(EplbExpertLocation, InitRejectsBadInput) {
  auto o = options(1, 3, 4, 2);
  for (const char* value :
       {R"({"physical_to_logical_map": [[0, 0, 1, 1]]})",  // expert 2 has no slot
        R"({"physical_to_logical_map": [[0, 1, 2]]})",     // 3 slots, expected 4
        R"({"physical_to_logical_map": [[0, 1, 2, 3]]})",  // 3 is no expert
        R"({"logical_count": [[1, 2, 3], [1, 2, 3]]})",    // 2 layers, model has 1
        R"({"something_else": 1})", "{not json", "dump.pt"}) {
    EXPECT_THROW(expert_location_from_init(value, o), Error) << value;
  }
}

TEST(EplbExpertLocation, JsonDumpRoundTrips) {
  ExpertLoad load{2, 8, {50, 1, 2, 3, 4, 5, 6, 7, 9, 9, 9, 80, 1, 1, 1, 1}};
  Placement placement = plan_placement(load, {12, 4, 2, 4}, EplbAlgorithm::kDeepseek);
  ExpertLocation loc = expert_location_from_placement(placement, 4);
  bool some_replicas_out_of_slot_order = false;
  for (int l = 0; l < 2; ++l) {
    for (int e = 0; e < 8; ++e) {
      auto r = loc.logical_to_all_physical(l, e);
      some_replicas_out_of_slot_order |= !std::is_sorted(r.begin(), r.end());
    }
  }
  ASSERT_TRUE(some_replicas_out_of_slot_order) << "the round trip would not test the order";
  std::string text = expert_location_to_json(loc).dump();
  ExpertLocation back = expert_location_from_init(text, options(2, 8, 12, 4));
  EXPECT_EQ(back, loc);
}

TEST(EplbExpertLocation, StaticDispatchPrefersOwnReplicaAndSharesTheRestEvenly) {
  // 8 ranks x 2 slots; expert 0 has replicas on ranks 0, 3 and 5; the others one each.
  std::vector<int32_t> p2l(16);
  for (int p = 0; p < 16; ++p) p2l[p] = p % 13;
  p2l[6] = 0;   // rank 3
  p2l[10] = 0;  // rank 5
  p2l[13] = 6;  // keep experts 6 and 10 placed: slot 6 and 10 were theirs
  p2l[14] = 10;
  p2l[15] = 12;
  ExpertLocation loc = ExpertLocation::from_physical_to_logical(13, 8, 16, p2l);
  std::map<int32_t, int> served;
  for (int rank = 0; rank < 8; ++rank) {
    std::vector<int32_t> table = ep::static_dispatch_table(loc, rank);
    int32_t slot = table[0];
    EXPECT_EQ(loc.physical_to_logical(0, slot), 0);
    if (rank == 0 || rank == 3 || rank == 5) {
      EXPECT_EQ(loc.rank_of_physical(slot), rank);
    } else {
      ++served[slot];
    }
    for (int e = 0; e < 13; ++e) EXPECT_EQ(loc.physical_to_logical(0, table[e]), e);
  }
  // 5 ranks without a replica over 3 replicas: 2, 2 and 1.
  ASSERT_EQ(served.size(), 3u);
  int twos = 0;
  for (auto [slot, n] : served) twos += n == 2;
  EXPECT_EQ(twos, 2);

  std::vector<int32_t> topk = {0, 12, 6}, physical(3);
  std::vector<int32_t> table = ep::static_dispatch_table(loc, 3);
  ep::logical_to_physical_static(table, topk, physical);
  EXPECT_EQ(physical, (std::vector<int32_t>{6, table[12], table[6]}));
}

TEST(EplbExpertLocation, DynamicDispatchDrawsEveryReplica) {
  ExpertLocation loc = ExpertLocation::trivial(1, 4, 12, 4);  // three replicas each
  std::vector<int32_t> topk(3000, 2), physical(3000);
  ep::logical_to_physical_dynamic(loc, 0, 1234, topk, physical);
  std::map<int32_t, int> hits;
  for (int32_t p : physical) ++hits[p];
  ASSERT_EQ(hits.size(), 3u);
  for (auto [slot, n] : hits) {
    EXPECT_EQ(loc.physical_to_logical(0, slot), 2);
    EXPECT_GT(n, 850);  // 1000 expected; below 850 is a broken draw
  }
  std::vector<int32_t> again(3000);
  ep::logical_to_physical_dynamic(loc, 0, 1234, topk, again);
  EXPECT_EQ(again, physical);
}

}  // namespace
}  // namespace epserve::eplb
