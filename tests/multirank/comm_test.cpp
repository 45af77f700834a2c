// Communicator collectives and point-to-point over W = 2, 3, 4 rank processes. Every rank can
// compute every other rank's input (seeded by rank), so each result is checked exactly against a
// reference computed locally in rank order.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <thread>

#include "comm/communicator.h"
#include "comm_checks.h"
#include "harness.h"

namespace epserve {
namespace {

class CommTest : public ::testing::TestWithParam<int> {};

TEST_P(CommTest, CollectivesMatchReference) {
  int code = test::run_ranks(GetParam(), [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    ASSERT_EQ(comm->size(), info.world_size);
    ASSERT_EQ(comm->rank(), info.rank);
    test::check_collectives(*comm);
  });
  EXPECT_EQ(code, 0);
}

TEST_P(CommTest, PointToPointRingAndRows) {
  int code = test::run_ranks(GetParam(), [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    int n = comm->size(), r = comm->rank();
    // Ring: send my rank's values to the right, receive the left's.
    std::vector<int64_t> out(1000), in(1000);
    std::iota(out.begin(), out.end(), int64_t(r) * 1000);
    std::vector<Request> reqs;
    reqs.push_back(comm->irecv((r - 1 + n) % n, in.data(), in.size() * 8, 7));
    reqs.push_back(comm->isend((r + 1) % n, out.data(), out.size() * 8, 7));
    comm->wait_all(reqs);
    EXPECT_EQ(in[5], int64_t((r - 1 + n) % n) * 1000 + 5);
    // Rows gathered without packing: every third row of a table, to the left neighbour.
    const size_t row = 257;
    std::vector<float> table(30 * row);
    for (size_t i = 0; i < table.size(); ++i) table[i] = float(r * 100000 + i);
    std::vector<const void*> rows;
    for (int i = 0; i < 30; i += 3) rows.push_back(table.data() + i * row);
    std::vector<float> got(rows.size() * row);
    reqs.push_back(comm->irecv((r + 1) % n, got.data(), got.size() * 4, 8));
    reqs.push_back(comm->isend_rows((r - 1 + n) % n, rows.data(), rows.size(), row * 4, 8));
    comm->wait_all(reqs);
    int from = (r + 1) % n;
    for (size_t k = 0; k < rows.size(); ++k) {
      EXPECT_EQ(got[k * row + 3], float(from * 100000 + (3 * k) * row + 3));
    }
    // Blocking send/recv to self and a zero-byte message.
    int64_t v = 42, w = 0;
    auto req = comm->isend(r, &v, 8, 9);
    comm->recv(r, &w, 8, 9);
    std::vector<Request> one;
    one.push_back(std::move(req));
    comm->wait_all(one);
    EXPECT_EQ(w, 42);
    comm->barrier();
  });
  EXPECT_EQ(code, 0);
}

TEST_P(CommTest, SplitAndGroupGiveIndependentCommunicators) {
  int code = test::run_ranks(GetParam(), [](const RankInfo& info) {
    auto world = Communicator::create_world(info);
    int n = world->size(), r = world->rank();
    // Two DP groups of consecutive ranks (the second may be smaller).
    int half = (n + 1) / 2;
    auto tp = world->split(r / half, r);
    ASSERT_TRUE(tp);
    EXPECT_EQ(tp->size(), r < half ? half : n - half);
    EXPECT_EQ(tp->world_rank_of(0), r < half ? 0 : half);
    // Reversed order by key.
    auto rev = world->split(0, -r);
    EXPECT_EQ(rev->rank(), n - 1 - r);
    EXPECT_EQ(rev->world_rank_of(0), n - 1);
    // A group of the even ranks; odd ranks get nullptr.
    std::vector<int> evens;
    for (int i = 0; i < n; i += 2) evens.push_back(i);
    auto even = world->group(evens);
    EXPECT_EQ(even != nullptr, r % 2 == 0);
    // Interleave collectives on different communicators: tags must not mix.
    int64_t a = r + 1;
    tp->allreduce(&a, 1, ReduceOp::kSum);
    int64_t base = r < half ? 0 : half, len = r < half ? half : n - half;
    EXPECT_EQ(a, len * (2 * base + len + 1) / 2);
    if (even) {
      double d = r;
      even->allreduce(&d, 1, ReduceOp::kMax);
      EXPECT_EQ(d, double(evens.back()));
      test::check_collectives(*even);
    }
    test::check_collectives(*tp);
    test::check_collectives(*rev);
    world->barrier();
  });
  EXPECT_EQ(code, 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommTest, ::testing::Values(2, 3, 4));

TEST(CommSingle, WorldOfOneWorksWithoutLauncher) {
  RankInfo info;  // rank 0 of 1, no store
  auto comm = Communicator::create_world(info);
  test::check_collectives(*comm);
  auto sub = comm->split(0, 0);
  EXPECT_EQ(sub->size(), 1);
}

}  // namespace
}  // namespace epserve

namespace epserve {
namespace {

// Ranks that finish early wait (blocked, not spinning) for a slow one in the shutdown barrier,
// and nobody is reported as failed.
TEST(CommShutdown, EarlyRanksWaitForALateOne) {
  std::vector<std::string> reports;
  test::RankRunOptions opts;
  opts.reports = &reports;
  int code = test::run_ranks(
      3,
      [](const RankInfo& info) {
        auto comm = Communicator::create_world(info);
        comm->barrier();
        if (info.rank == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      },
      opts);
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(reports.empty()) << reports[0];
}

}  // namespace
}  // namespace epserve
