// Two nodes in two network namespaces joined by a veth pair (netns.h), --nnodes 2 with 2 ranks
// per node, UCX over TCP across the veth: the communicator collectives and dispatch rounds in both
// modes must give the same results, bit for bit, as the same 4 ranks on one node.
#include <gtest/gtest.h>
#include <signal.h>

#include "comm/symmetric_buffer.h"
#include "comm_checks.h"
#include "dispatch_checks.h"
#include "harness.h"
#include "netns.h"

namespace epserve {
namespace {

void body(const RankInfo& info) {
  auto comm = Communicator::create_world(info);
  std::string label = std::getenv("EPSERVE_TEST_LABEL");
  std::string digests = std::to_string(test::check_collectives(*comm));
  for (DispatchMode mode : {DispatchMode::kNormal, DispatchMode::kLowLatency}) {
    test::DispatchCase c;
    DispatchConfig config{c.hidden, c.num_topk, c.experts_per_rank * comm->size(), c.capacity};
    auto dispatcher = make_dispatcher(mode, *comm, config);
    digests += " " + std::to_string(test::check_dispatch_round(*comm, *dispatcher, c));
    test::DispatchCase b = c;
    b.routing = test::Routing::kAllOnOneRank;
    b.seed = 9;
    digests += " " + std::to_string(test::check_two_in_flight(*comm, *dispatcher, c, b));
  }
  if (label == "two") {
    // Ranks on the other node are reached over the network, never through shared memory.
    SymmetricBuffer buf(*comm, 64);
    for (int r = 0; r < comm->size(); ++r) {
      if (r != comm->rank()) {
        EXPECT_FALSE(buf.is_direct(r)) << "rank " << r;
      }
    }
    EXPECT_EQ(info.nnodes, 2);
    EXPECT_EQ(comm->world().node_of(comm->rank() ^ 2) != info.node_rank, true);
  }
  test::write_file(label + "_rank" + std::to_string(info.rank), digests);
}

TEST(MultiNode, CollectivesAndDispatchMatchOneNode) {
  test::RankRunOptions two;
  two.env = {{"EPSERVE_TEST_LABEL", "two"}};
  std::string why;
  long long veth_bytes = 0;
  int code = test::run_nodes(2, 4, body, two, &why, &veth_bytes);
  if (code == test::kSkipped) GTEST_SKIP() << why;
  ASSERT_EQ(code, 0);
  // The collectives alone move megabytes between the nodes; all of it must cross the veth.
  EXPECT_GT(veth_bytes, 4ll << 20);
  std::vector<std::string> two_node;
  for (int r = 0; r < 4; ++r) two_node.push_back(test::read_file("two_rank" + std::to_string(r)));

  test::RankRunOptions one;
  one.env = {{"EPSERVE_TEST_LABEL", "one"}, {"UCX_TLS", "tcp,self"}};
  ASSERT_EQ(test::run_ranks(4, body, one), 0);
  for (int r = 0; r < 4; ++r) {
    std::string one_node = test::read_file("one_rank" + std::to_string(r));
    EXPECT_FALSE(one_node.empty());
    EXPECT_EQ(two_node[r], one_node) << "rank " << r;
  }
}

// A rank killed on node 1: the ranks on node 0 stop within a bounded time naming it, and both
// node launchers exit non-zero.
TEST(MultiNode, KilledRankOnOneNodeStopsTheOther) {
  std::string why;
  int code = test::run_nodes(
      2, 4,
      [](const RankInfo& info) {
        auto comm = Communicator::create_world(info);
        std::vector<float> v(1000, 1.0f);
        for (int step = 0;; ++step) {
          comm->set_context("step " + std::to_string(step));
          if (info.rank == 3 && step == 30) raise(SIGKILL);
          try {
            comm->allreduce(v.data(), v.size(), ReduceOp::kSum);
          } catch (const Error& e) {
            test::write_file("error" + std::to_string(info.rank), e.what());
            throw;
          }
        }
      },
      {}, &why);
  if (code == test::kSkipped) GTEST_SKIP() << why;
  EXPECT_NE(code, 0);
  for (int r : {0, 1}) {
    std::string line = test::read_file("error" + std::to_string(r));
    EXPECT_NE(line.find("rank 3"), std::string::npos) << line;
    EXPECT_NE(line.find("allreduce (step 30)"), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace epserve
