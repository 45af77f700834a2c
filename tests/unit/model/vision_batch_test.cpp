// Qwen3-VL's parts of a forward batch: the 3-D positions and image rows survive the encoding a
// group leader sends its followers; get_rope_index's positions for a prompt with two images.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/forward_batch.h"
#include "model/mrope_positions.h"

namespace epserve {
namespace {

TEST(VisionBatch, SerializeKeepsPositionsAndImageRows) {
  ForwardBatch b;
  const int32_t a[3] = {5, 6, 7};
  b.add_sequence(a, 3, 0, {0, 1, 2}, LogitsWanted::kLast);
  const int32_t c[1] = {9};
  b.add_sequence(c, 1, 2, {3, 4, 5}, LogitsWanted::kAll);
  b.mrope_positions = {0, 0, 0, 1, 1, 2, 1, 2, 1, 7, 7, 7};
  b.image_rows = {1, 2};
  b.image_embed_width = 3;
  b.image_embeds = {0.5f, -1.25f, 3e-8f, 2.0f, 1e9f, -0.0f};
  ForwardBatch d = ForwardBatch::deserialize(b.serialize());
  EXPECT_EQ(d.token_ids, b.token_ids);
  EXPECT_EQ(d.mrope_positions, b.mrope_positions);
  EXPECT_EQ(d.image_rows, b.image_rows);
  EXPECT_EQ(d.image_embed_width, 3);
  EXPECT_EQ(d.image_embeds, b.image_embeds);
  // Without vision fields the encoding is what it was.
  ForwardBatch plain;
  plain.add_sequence(a, 3, 0, {0, 1, 2}, LogitsWanted::kLast);
  EXPECT_EQ(plain.serialize().size(), 1u + 3 + 3 + 3);
  EXPECT_TRUE(ForwardBatch::deserialize(plain.serialize()).mrope_positions.empty());
}

TEST(VisionBatch, MropePositionsFollowGetRopeIndex) {
  VisionConfig vc;
  vc.image_token_id = 12;
  vc.spatial_merge_size = 2;
  // text text <start> [2x3 merged image] <end> text <start> [1x2] <end> text
  std::vector<int32_t> ids = {30, 31, 9};
  ids.insert(ids.end(), 6, 12);
  ids.insert(ids.end(), {10, 40, 9, 12, 12, 10, 50});
  auto m = qwen3_vl_mrope_positions(ids.data(), static_cast<int64_t>(ids.size()),
                                    {{1, 4, 6}, {1, 2, 4}}, vc);
  ASSERT_EQ(m.runs.size(), 2u);
  EXPECT_EQ(m.runs[0].first, 3);
  EXPECT_EQ(m.runs[1].first, 12);
  auto at = [&](int64_t p) {
    return std::vector<int32_t>(m.thw.begin() + 3 * p, m.thw.begin() + 3 * p + 3);
  };
  EXPECT_EQ(at(2), (std::vector<int32_t>{2, 2, 2}));
  EXPECT_EQ(at(3), (std::vector<int32_t>{3, 3, 3}));
  EXPECT_EQ(at(8), (std::vector<int32_t>{3, 4, 5}));  // row 1, col 2
  EXPECT_EQ(at(9), (std::vector<int32_t>{6, 6, 6}));  // <end>: 3 + max(2, 3)
  EXPECT_EQ(at(13), (std::vector<int32_t>{9, 9, 10}));
  EXPECT_EQ(at(15), (std::vector<int32_t>{12, 12, 12}));
  EXPECT_EQ(m.rope_delta, 13 - 16);
  EXPECT_THROW(qwen3_vl_mrope_positions(ids.data(), 10, {{1, 4, 6}, {1, 2, 4}}, vc), Error);
}

}  // namespace
}  // namespace epserve
