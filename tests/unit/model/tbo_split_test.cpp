// The two-batch-overlap split against cases worked by hand from SGLang's two_batch_overlap.py
// (compute_split_seq_index / compute_split_token_index, threshold 0.48) and the world agreement
// of TboDPAttentionPreparer.
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>

#include "core/error.h"
#include "model/tbo_split.h"

namespace epserve {
namespace {

// A batch of sequences with `lens` new tokens each and `past` cached tokens each.
ForwardBatch make_batch(const std::vector<int64_t>& lens, int64_t past = 0) {
  ForwardBatch batch;
  int32_t slot = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    std::vector<int32_t> tokens(lens[i]), slots(past + lens[i]);
    std::iota(tokens.begin(), tokens.end(), static_cast<int32_t>(100 * i));
    for (auto& s : slots) s = slot++;
    batch.add_sequence(tokens.data(), lens[i], past, slots, LogitsWanted::kLast);
  }
  return batch;
}

TEST(TboSplit, BalancedSumStopsWhenTheDifferenceGrows) {
  // [4, 4, 4, 4]: diffs 8, 0, 8 -> 2.  [1, 2, 3, 4]: diffs 8, 4, 2 -> 3.
  EXPECT_EQ(split_by_balanced_sum({4, 4, 4, 4}), 2);
  EXPECT_EQ(split_by_balanced_sum({1, 2, 3, 4}), 3);
  // Ties move right: [2, 2, 2, 2, 2] diffs 6, 2, 2, 6 -> 3.
  EXPECT_EQ(split_by_balanced_sum({2, 2, 2, 2, 2}), 3);
  // Fewer than two sequences: 0.
  EXPECT_EQ(split_by_balanced_sum({7}), 0);
  EXPECT_EQ(split_by_balanced_sum({}), 0);
}

TEST(TboSplit, CumLessThanHalfFindsTheSequenceAcrossTheMiddle) {
  // [10, 100, 10]: half 60; 10, 110 > 60 -> 1.
  EXPECT_EQ(split_by_cum_less_than_half({10, 100, 10}), 1);
  // [100]: half 50; 100 > 50 -> 0.
  EXPECT_EQ(split_by_cum_less_than_half({100}), 0);
}

TEST(TboSplit, ThresholdDecidesTheTwoChunkSplit) {
  // [4, 4, 4, 4]: left 8 of 16 = 0.5: balanced.
  EXPECT_FALSE(two_chunk_split_enabled({4, 4, 4, 4}, 0.48));
  // [10, 100, 10]: balanced index 1 (diffs 100, 100 -> tie moves right: 2; left 110 > 120 * 0.52).
  EXPECT_TRUE(two_chunk_split_enabled({10, 100, 10}, 0.48));
  // [45, 55]: left 45 < 100 * 0.48: two chunks at 0.48, not at 0.45.
  EXPECT_TRUE(two_chunk_split_enabled({45, 55}, 0.48));
  EXPECT_FALSE(two_chunk_split_enabled({45, 55}, 0.45));
  EXPECT_THROW(two_chunk_split_enabled({1, 2}, 0.6), std::exception);
}

TEST(TboSplit, DecodeSplitsTheSequencesInHalf) {
  ForwardBatch batch = make_batch({1, 1, 1, 1, 1}, 3);
  TboSplit split = compute_tbo_split(batch, 0.48);
  EXPECT_EQ(split.split_seq, 2);
  EXPECT_EQ(split.split_token, 2);
  EXPECT_FALSE(split.two_chunk);
  // One sequence: A is empty (SGLang: (1 // 1) // 2 = 0).
  EXPECT_EQ(compute_tbo_split(make_batch({1}, 3), 0.48).split_token, 0);
}

TEST(TboSplit, ExtendSplitsAtTheBalancedSequenceBoundary) {
  ForwardBatch batch = make_batch({3, 5, 4, 4});
  TboSplit split = compute_tbo_split(batch, 0.48);
  // Diffs 10, 0, 8 -> index 2, token 8 of 16.
  EXPECT_EQ(split.split_seq, 2);
  EXPECT_EQ(split.split_token, 8);
  EXPECT_FALSE(split.two_chunk);
  auto [a, b] = split_forward_batch(batch, split);
  ASSERT_EQ(a.seqs.size(), 2u);
  ASSERT_EQ(b.seqs.size(), 2u);
  EXPECT_EQ(b.seqs[0].token_offset, 0);
  EXPECT_EQ(b.token_ids[0], 200);
  EXPECT_EQ(b.seqs[1].token_offset, 4);
}

TEST(TboSplit, OneLongPromptIsCutInTwo) {
  // [2, 20]: balanced index 1, left 2 of 22 < 0.48 -> two chunks at token 11 inside sequence 1.
  ForwardBatch batch = make_batch({2, 20}, 0);
  TboSplit split = compute_tbo_split(batch, 0.48);
  EXPECT_TRUE(split.two_chunk);
  EXPECT_EQ(split.split_seq, 1);
  EXPECT_EQ(split.split_token, 11);
  auto [a, b] = split_forward_batch(batch, split);
  ASSERT_EQ(a.num_tokens(), 11);
  ASSERT_EQ(b.num_tokens(), 11);
  ASSERT_EQ(a.seqs.size(), 2u);
  ASSERT_EQ(b.seqs.size(), 1u);
  // A's part of sequence 1: its first 9 tokens, positions 0..8, slots of those positions.
  EXPECT_EQ(a.seqs[1].num_new, 9);
  EXPECT_EQ(a.seqs[1].num_past, 0);
  EXPECT_EQ(a.seqs[1].slots,
            std::vector<int32_t>(batch.seqs[1].slots.begin(), batch.seqs[1].slots.begin() + 9));
  // B's part: 9 cached tokens (A wrote them), 11 new, every slot of the sequence.
  EXPECT_EQ(b.seqs[0].num_past, 9);
  EXPECT_EQ(b.seqs[0].num_new, 11);
  EXPECT_EQ(b.seqs[0].slots, batch.seqs[1].slots);
  EXPECT_EQ(b.positions[0], 9);
  EXPECT_EQ(b.token_ids[0], 109);
}

TEST(TboSplit, ChunkedPrefillKeepsItsCachedPrefix) {
  // One sequence, 6 cached and 10 new: two chunks at token 5.
  ForwardBatch batch = make_batch({10}, 6);
  auto [a, b] = split_forward_batch(batch, compute_tbo_split(batch, 0.48));
  EXPECT_EQ(a.seqs[0].num_past, 6);
  EXPECT_EQ(a.seqs[0].num_new, 5);
  EXPECT_EQ(a.positions.front(), 6);
  EXPECT_EQ(b.seqs[0].num_past, 11);
  EXPECT_EQ(b.positions.front(), 11);
  EXPECT_EQ(b.seqs[0].slots.size(), 16u);
}

// Qwen3-VL: each micro-batch gets the 3-D positions of its rows and the image rows among them,
// renumbered from its first row, with their embeddings; an image cut by the split is cut there.
TEST(TboSplit, VisionFieldsGoWithTheirRows) {
  // [4, 10]: left 4 of 14 < 0.48 -> two chunks at token 7; the image is rows 5 .. 10.
  ForwardBatch batch = make_batch({4, 10});
  const int64_t T = batch.num_tokens();
  for (int32_t r = 0; r < T; ++r)
    batch.mrope_positions.insert(batch.mrope_positions.end(), {r, 100 + r, 200 + r});
  batch.image_embed_width = 2;
  for (int32_t r = 5; r <= 10; ++r) {
    batch.image_rows.push_back(r);
    batch.image_embeds.insert(batch.image_embeds.end(), {static_cast<float>(r), -0.5f * r});
  }
  TboSplit split = compute_tbo_split(batch, 0.48);
  ASSERT_EQ(split.split_token, 7);
  auto [a, b] = split_forward_batch(batch, split);
  ASSERT_EQ(a.mrope_positions.size(), 3u * 7);
  ASSERT_EQ(b.mrope_positions.size(), 3u * 7);
  EXPECT_EQ(std::vector<int32_t>(a.mrope_positions.begin() + 18, a.mrope_positions.end()),
            (std::vector<int32_t>{6, 106, 206}));
  EXPECT_EQ(std::vector<int32_t>(b.mrope_positions.begin(), b.mrope_positions.begin() + 3),
            (std::vector<int32_t>{7, 107, 207}));
  EXPECT_EQ(a.image_rows, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(a.image_embeds, (std::vector<float>{5, -2.5f, 6, -3}));
  EXPECT_EQ(b.image_rows, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(b.image_embeds, (std::vector<float>{7, -3.5f, 8, -4, 9, -4.5f, 10, -5}));
  EXPECT_EQ(a.image_embed_width, 2);
  EXPECT_EQ(b.image_embed_width, 2);
  // Split by sequences (text, then the image prompt): B's image rows start from its first row.
  ForwardBatch two = make_batch({6, 6});
  two.image_embed_width = 1;
  two.image_rows = {8, 9};
  two.image_embeds = {1, 2};
  auto [c, d] = split_forward_batch(two, compute_tbo_split(two, 0.48));
  EXPECT_TRUE(c.image_rows.empty());
  EXPECT_TRUE(c.mrope_positions.empty());
  EXPECT_EQ(d.image_rows, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(d.image_embeds, (std::vector<float>{1, 2}));
}

TEST(TboSplit, TheWorldAgreesLikeSglang) {
  auto max_of = [](std::vector<std::vector<int64_t>> votes) {
    std::vector<int64_t> m(3, 0);
    for (auto& v : votes) {
      for (int i = 0; i < 3; ++i) m[i] = std::max(m[i], v[i]);
    }
    return m;
  };
  ForwardBatch decode = make_batch({1, 1}, 4), extend = make_batch({5}), idle;
  // Idle groups go along with either mode.
  EXPECT_TRUE(tbo_agreed(max_of({tbo_vote(decode, false), tbo_vote(idle, false)})));
  EXPECT_TRUE(tbo_agreed(max_of({tbo_vote(extend, false), tbo_vote(idle, false)})));
  // Extend in one group and decode in another: no TBO this step.
  EXPECT_FALSE(tbo_agreed(max_of({tbo_vote(extend, false), tbo_vote(decode, false)})));
  // Extend with low-latency dispatch forced: refused (SGLang's local_can_run_tbo).
  EXPECT_FALSE(tbo_agreed(max_of({tbo_vote(extend, true), tbo_vote(extend, false)})));
  EXPECT_TRUE(tbo_agreed(max_of({tbo_vote(decode, true)})));
  // Everyone idle: nothing to overlap.
  EXPECT_FALSE(tbo_agreed(max_of({tbo_vote(idle, false)})));
}

// epserve's per-step rule: the bench model (32 routed experts, top-4) at W = 2 with two DP groups.
// A micro-batch of G * T * K / 2 (token, slot) pairs over 32 experts: decode at 32 and 128
// sequences per rank gives 4 and 16 rows per expert (kept whole at 64), prefill at 2048 tokens
// per rank 256 (split, but only across nodes).
TEST(TboSplit, TheSplitPaysOnlyAcrossNodesWithEnoughRowsPerExpert) {
  TboPolicy policy;
  policy.min_rows_per_expert = 64;
  EXPECT_FALSE(tbo_split_pays(policy, true, 32, 2, 4, 32));
  EXPECT_FALSE(tbo_split_pays(policy, true, 128, 2, 4, 32));
  EXPECT_TRUE(tbo_split_pays(policy, true, 2048, 2, 4, 32));
  EXPECT_TRUE(tbo_split_pays(policy, true, 512, 2, 4, 32));  // exactly 64 rows
  EXPECT_FALSE(tbo_split_pays(policy, true, 511, 2, 4, 32));
  EXPECT_FALSE(tbo_split_pays(policy, true, 512, 1, 4, 32));    // one group: half the rows
  EXPECT_FALSE(tbo_split_pays(policy, false, 2048, 2, 4, 32));  // one node
  policy.always = true;
  EXPECT_TRUE(tbo_split_pays(policy, false, 1, 2, 4, 32));
}

TEST(TboSplit, ThePolicyComesFromTheEnvironment) {
  unsetenv("EPSERVE_TBO_POLICY");
  unsetenv("EPSERVE_TBO_MIN_ROWS_PER_EXPERT");
  TboPolicy policy = tbo_policy_from_env();
  EXPECT_FALSE(policy.always);
  EXPECT_EQ(policy.min_rows_per_expert, kTboMinRowsPerExpert);
  setenv("EPSERVE_TBO_POLICY", "always", 1);
  setenv("EPSERVE_TBO_MIN_ROWS_PER_EXPERT", "8", 1);
  policy = tbo_policy_from_env();
  EXPECT_TRUE(policy.always);
  EXPECT_EQ(policy.min_rows_per_expert, 8);
  setenv("EPSERVE_TBO_POLICY", "sometimes", 1);
  EXPECT_THROW(tbo_policy_from_env(), Error);
  unsetenv("EPSERVE_TBO_POLICY");
  unsetenv("EPSERVE_TBO_MIN_ROWS_PER_EXPERT");
}

}  // namespace
}  // namespace epserve
