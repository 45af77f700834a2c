// The expert distribution recorder: folding physical counts to logical experts through the
// placement of each pass, the stat ring buffer, per_pass / per_token records, stat_approx.
#include "eplb/recorder.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace epserve::eplb {
namespace {

// 2 layers, 4 experts in 6 slots over 2 ranks (3 each); experts 0 and 1 have a replica.
const RecorderShape kShape{2, 4, 6, 2};
const std::vector<int32_t> kMap = {0, 1, 2, 3, 0, 1,   // layer 0
                                   3, 2, 1, 0, 3, 2};  // layer 1

ForwardBatch batch_of(std::vector<int32_t> ids) {
  ForwardBatch b;
  b.token_ids = ids;
  for (size_t i = 0; i < ids.size(); ++i) b.positions.push_back(static_cast<int32_t>(10 + i));
  return b;
}

// One pass: layer 0 sends tokens to `slots0`, layer 1 to `slots1` (2 tokens, top-2 each).
void run_pass(ExpertDistributionRecorder& r, int64_t id, std::vector<int32_t> slots0,
              std::vector<int32_t> slots1) {
  r.begin_pass(id, batch_of({7, 8}));
  r.on_topk(0, slots0.data(), 0, 2, 2);
  r.on_topk(1, slots1.data(), 0, 2, 2);
  r.end_pass(kMap);
}

TEST(EplbRecorder, StatFoldsReplicasIntoTheirLogicalExpert) {
  ExpertDistributionRecorder r(RecorderMode::kStat, 4, kShape, 0);
  run_pass(r, 1, {0, 4, 1, -1}, {0, 4, 5, 2});  // -1 entries are skipped
  EXPECT_EQ(r.num_recorded_passes(), 0) << "nothing is counted before start()";
  r.start();
  run_pass(r, 2, {0, 4, 1, -1}, {0, 4, 5, 2});
  std::vector<int64_t> sum = r.logical_count_sum();
  EXPECT_EQ(sum, (std::vector<int64_t>{2, 1, 0, 0,     // slots 0 and 4 both hold expert 0
                                       0, 1, 1, 2}));  // layer 1: 0->3, 4->3, 5->2, 2->1
  // Rank loads of the pass: slots 0-2 on rank 0, 3-5 on rank 1.
  EXPECT_EQ(r.last_pass_rank_loads(), (std::vector<int64_t>{2, 1, 2, 2}));
  int64_t rows = 0;
  std::vector<int64_t> counts = r.logical_count(&rows);
  EXPECT_EQ(rows, 4) << "a bounded buffer always has buffer_size rows";
  EXPECT_EQ(counts.size(), 4u * 2 * 4);
  EXPECT_EQ(counts[0], 2);
  EXPECT_EQ(counts[8], 0) << "rows not yet recorded are zero";
}

TEST(EplbRecorder, StatRingBufferKeepsTheLastPassesOldestFirst) {
  ExpertDistributionRecorder r(RecorderMode::kStat, 2, kShape, 0);
  r.start();
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<int32_t> s0(4, pass);  // pass p sends all 4 entries of layer 0 to slot p
    run_pass(r, pass, s0, {-1, -1, -1, -1});
  }
  int64_t rows = 0;
  std::vector<int64_t> counts = r.logical_count(&rows);
  ASSERT_EQ(rows, 2);
  EXPECT_EQ(counts[1], 4) << "oldest kept pass (1) first: slot 1 holds expert 1";
  EXPECT_EQ(counts[8 + 2], 4) << "then pass 2: expert 2";
  EXPECT_EQ(r.logical_count_sum()[0], 0) << "pass 0 left the window";
  r.reset();
  EXPECT_EQ(r.logical_count_sum(), std::vector<int64_t>(8, 0));
}

TEST(EplbRecorder, StopKeepsWhatWasRecorded) {
  ExpertDistributionRecorder r(RecorderMode::kStat, -1, kShape, 0);
  r.start();
  run_pass(r, 1, {0, 0, 0, 0}, {-1, -1, -1, -1});
  r.stop();
  run_pass(r, 2, {0, 0, 0, 0}, {-1, -1, -1, -1});
  int64_t rows = 0;
  r.logical_count(&rows);
  EXPECT_EQ(rows, 1) << "unbounded: one row per recorded pass";
  EXPECT_EQ(r.logical_count_sum()[0], 4);
}

TEST(EplbRecorder, PerPassAndPerTokenRecords) {
  ExpertDistributionRecorder pass(RecorderMode::kPerPass, -1, kShape, 3);
  pass.start();
  run_pass(pass, 42, {0, 4, 1, 5}, {2, 2, 2, 2});
  ASSERT_EQ(pass.records().size(), 1u);
  const nlohmann::json& rec = pass.records()[0];
  EXPECT_EQ(rec["forward_pass_id"], 42);
  EXPECT_EQ(rec["rank"], 3);
  EXPECT_EQ(rec["global_physical_count"][0].get<std::vector<int64_t>>(),
            (std::vector<int64_t>{1, 1, 0, 0, 1, 1}));
  EXPECT_FALSE(rec.contains("input_ids"));

  ExpertDistributionRecorder token(RecorderMode::kPerToken, -1, kShape, 0);
  token.start();
  token.begin_pass(5, batch_of({7, 8, 9}));
  const std::vector<int32_t> ids = {0, 4, 1, 5};  // this rank's share: tokens 1 and 2
  token.on_topk(0, ids.data(), 1, 2, 2);
  token.end_pass(kMap);
  const nlohmann::json& t = token.records()[0];
  EXPECT_EQ(t["input_ids"].get<std::vector<int32_t>>(), (std::vector<int32_t>{8, 9}));
  EXPECT_EQ(t["positions"].get<std::vector<int32_t>>(), (std::vector<int32_t>{11, 12}));
  EXPECT_EQ(t["topk_ids_of_layer"][0][1].get<std::vector<int32_t>>(), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(t["topk_ids_of_layer"][1][0].get<std::vector<int32_t>>(),
            (std::vector<int32_t>{-1, -1}))
      << "a layer that reported nothing";
}

TEST(EplbRecorder, StatApproxCountsWhatTheDispatcherDelivered) {
  ExpertDistributionRecorder r(RecorderMode::kStatApprox, 4, kShape, 0, /*dispatcher_counts=*/true);
  r.start();
  r.begin_pass(1, batch_of({1}));
  const std::vector<int32_t> ids = {0, 0};
  r.on_topk(0, ids.data(), 0, 1, 2);  // ignored: counts come from the dispatcher
  const int64_t rows[3] = {0, 5, 1};  // slots 3, 4, 5 (rank 1's)
  r.on_received(0, 3, rows, 3);
  r.end_pass(kMap);
  EXPECT_EQ(r.logical_count_sum(), (std::vector<int64_t>{5, 1, 0, 0, 0, 0, 0, 0}));

  ExpertDistributionRecorder plain(RecorderMode::kStatApprox, 4, kShape, 0);
  plain.start();
  plain.begin_pass(1, batch_of({1}));
  plain.on_topk(0, ids.data(), 0, 1, 2);
  plain.end_pass(kMap);
  EXPECT_EQ(plain.logical_count_sum()[0], 2) << "without a dispatcher it counts the router's ids";
}

TEST(EplbRecorder, BadModeAndBufferSizeNameTheFlag) {
  EXPECT_THROW(parse_recorder_mode("per_step"), Error);
  EXPECT_THROW(ExpertDistributionRecorder(RecorderMode::kStat, 0, kShape, 0), Error);
  ExpertDistributionRecorder r(RecorderMode::kStat, 2, kShape, 0);
  r.start();
  r.begin_pass(1, batch_of({1}));
  EXPECT_THROW(r.end_pass(std::vector<int32_t>(3, 0)), Error);
}

}  // namespace
}  // namespace epserve::eplb
