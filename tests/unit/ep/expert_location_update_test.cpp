// ExpertLocation::with_layers (live EPLB switches a chunk of layers at a time) and same_layer.
#include <gtest/gtest.h>

#include "core/error.h"
#include "ep/expert_location.h"

namespace epserve::ep {
namespace {

std::vector<int32_t> to_vector(std::span<const int32_t> s) {
  return {s.begin(), s.end()};
}

TEST(EplbExpertLocationUpdate, WithLayersTakesOnlyTheGivenLayers) {
  ExpertLocation old_map = ExpertLocation::trivial(3, 4, 6, 2);  // slots 4, 5 replicate 0, 1
  ExpertLocation update =
      ExpertLocation::from_physical_to_logical(4, 2, 6,
                                               {3, 3, 2, 1, 0, 3,  // layer 0: expert 3 three times
                                                0, 1, 2, 3, 2, 2,  // layer 1
                                                1, 0, 3, 2, 1, 0});  // layer 2
  const std::vector<int> layers = {0, 2};
  ExpertLocation mixed = old_map.with_layers(update, layers);
  EXPECT_TRUE(mixed.same_layer(update, 0));
  EXPECT_TRUE(mixed.same_layer(old_map, 1));
  EXPECT_TRUE(mixed.same_layer(update, 2));
  EXPECT_FALSE(mixed.same_layer(old_map, 0));
  EXPECT_EQ(to_vector(mixed.logical_to_all_physical(0, 3)), (std::vector<int32_t>{0, 1, 5}));
  EXPECT_EQ(to_vector(mixed.logical_to_all_physical(1, 0)), (std::vector<int32_t>{0, 4}))
      << "layer 1 keeps the old replica lists";
  EXPECT_EQ(mixed.max_replicas(), 3);
  EXPECT_EQ(mixed.all_physical_to_logical().size(), 18u);
  EXPECT_EQ(mixed.all_physical_to_logical()[12], 1);
}

TEST(EplbExpertLocationUpdate, MismatchedSizesAndLayersAreErrors) {
  ExpertLocation a = ExpertLocation::trivial(2, 4, 6, 2);
  ExpertLocation b = ExpertLocation::trivial(2, 4, 8, 2);
  const std::vector<int> zero = {0}, bad = {5};
  EXPECT_THROW(a.with_layers(b, zero), Error);
  EXPECT_THROW(a.with_layers(a, bad), Error);
}

}  // namespace
}  // namespace epserve::ep
