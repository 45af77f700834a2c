// Which puts a prefill rank makes into a decode rank (disagg/kv_agent.h): whole rows coalesce
// over runs of consecutive slots, head slices go slot by slot at the right offsets, every head of
// every decode rank is written exactly once over all prefill ranks, and layouts that cannot match
// are refused with a message naming both.
#include "disagg/kv_agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "core/error.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

KvMemory gqa(int64_t kv_heads, int rank, int size) {
  KvMemory m;
  m.k.assign(3, nullptr);
  m.v.assign(3, nullptr);
  m.num_kv_heads = kv_heads;
  m.head_dim = 8;
  int64_t local = kv_heads >= size ? kv_heads / size : 1;
  m.k_width = m.v_width = local * 8;
  m.group_rank = rank;
  m.group_size = size;
  return m;
}

KvMemory mla(int rank, int size) {
  KvMemory m;
  m.k.assign(2, nullptr);
  m.mla = true;
  m.k_width = 24;
  m.group_rank = rank;
  m.group_size = size;
  return m;
}

std::vector<KvRankLayout> group(const std::function<KvMemory(int, int)>& make, int size) {
  std::vector<KvRankLayout> out;
  for (int r = 0; r < size; ++r) out.push_back(kv_rank_layout(make(r, size), r));
  return out;
}

// (layer, v, dst slot, float within the decode row) -> times written, over every prefill rank.
std::map<std::tuple<int64_t, bool, int32_t, int64_t>, int> coverage(
    const std::vector<KvRankLayout>& prefill, const KvRankLayout& decode, int decode_index,
    const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
  std::map<std::tuple<int64_t, bool, int32_t, int64_t>, int> written;
  for (int p = 0; p < static_cast<int>(prefill.size()); ++p) {
    for (const KvPut& put : plan_kv_puts(prefill, p, decode, decode_index, src, dst)) {
      const int64_t width = decode.row_width();
      for (int64_t f = 0; f < put.floats; ++f) {
        int64_t flat = put.dst_offset + f;  // a run spans rows of consecutive slots
        written[{put.layer, put.v, put.dst_slot + static_cast<int32_t>(flat / width),
                 flat % width}] += 1;
      }
    }
  }
  return written;
}

TEST(KvPlan, SameLayoutCoalescesRunsOfConsecutiveSlots) {
  auto prefill = group([](int r, int s) { return gqa(2, r, s); }, 1);
  KvRankLayout decode = kv_rank_layout(gqa(2, 0, 1), 0);
  // Positions 0..5: source slots 10..15; reserved slots 4..6 then 20..22 (two pages of 3).
  std::vector<KvPut> puts =
      plan_kv_puts(prefill, 0, decode, 0, {10, 11, 12, 13, 14, 15}, {4, 5, 6, 20, 21, 22});
  ASSERT_EQ(puts.size(), 3u * 2 * 2);  // layers x K/V x runs
  EXPECT_EQ(puts[0].src_slot, 10);
  EXPECT_EQ(puts[0].dst_slot, 4);
  EXPECT_EQ(puts[0].floats, 3 * 16);
  EXPECT_EQ(puts[1].src_slot, 13);
  EXPECT_EQ(puts[1].dst_slot, 20);
}

TEST(KvPlan, GqaHeadsSplitOverPrefillRanksFillOneDecodeRank) {
  // Prefill: TP 2 (one kv head each); decode: one rank with both heads (DP attention).
  auto prefill = group([](int r, int s) { return gqa(2, r, s); }, 2);
  KvRankLayout decode = kv_rank_layout(gqa(2, 0, 1), 0);
  std::vector<int32_t> src = {0, 1, 2}, dst = {7, 8, 9};
  auto one = plan_kv_puts(prefill, 1, decode, 0, src, dst);
  ASSERT_FALSE(one.empty());
  EXPECT_EQ(one[0].src_offset, 0);
  EXPECT_EQ(one[0].dst_offset, 8);  // head 1 sits after head 0 in the decode row
  EXPECT_EQ(one[0].floats, 8);      // one head of one slot
  auto written = coverage(prefill, decode, 0, src, dst);
  EXPECT_EQ(written.size(), 3u * 2 * 3 * 16);  // layers x K/V x slots x floats
  for (const auto& [where, times] : written) EXPECT_EQ(times, 1);
}

TEST(KvPlan, MlaDecodeRanksAreSpreadOverPrefillRanks) {
  auto prefill = group(mla, 2);
  KvRankLayout decode = kv_rank_layout(mla(0, 2), 0);
  EXPECT_FALSE(plan_kv_puts(prefill, 0, decode, 0, {1}, {2}).empty());
  EXPECT_TRUE(plan_kv_puts(prefill, 1, decode, 0, {1}, {2}).empty());
  EXPECT_TRUE(plan_kv_puts(prefill, 0, decode, 1, {1}, {2}).empty());
  EXPECT_FALSE(plan_kv_puts(prefill, 1, decode, 1, {1}, {2}).empty());
  for (int d = 0; d < 4; ++d) {
    for (const auto& [where, times] : coverage(prefill, decode, d, {1, 2}, {5, 9})) {
      EXPECT_EQ(times, 1);
    }
  }
}

TEST(KvPlan, DifferentModelsAreRefused) {
  auto prefill = group([](int r, int s) { return gqa(2, r, s); }, 1);
  KvRankLayout other = kv_rank_layout(gqa(4, 0, 1), 0);
  EXPECT_THAT(
      [&] {
        try {
          plan_kv_puts(prefill, 0, other, 0, {}, {});
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("prefill: 3 layers, 2 kv heads of 8 floats (K and V); decode: 3 layers, 4 kv "
                "heads"));
  nlohmann::json p = {{{"layout",
                        {{"num_layers", 3},
                         {"head_width", 8},
                         {"heads_total", 2},
                         {"head_begin", 0},
                         {"head_end", 2},
                         {"has_v", true}}}}};
  nlohmann::json d = p;
  EXPECT_EQ(check_kv_layouts(p, d), "");
  d[0]["layout"]["num_layers"] = 4;
  EXPECT_THAT(check_kv_layouts(p, d), HasSubstr("serve the same model on both"));
}

}  // namespace
}  // namespace epserve
