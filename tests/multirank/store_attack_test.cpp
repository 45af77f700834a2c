// A stranger attacks a running job's rendezvous store: garbage, the unauthenticated "set the
// abort key" message that once stopped a whole server, a wrong secret, a huge length prefix, and
// connections that say nothing. The ranks' collectives must go on and the job must end cleanly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <numeric>

#include "comm/communicator.h"
#include "harness.h"
#include "support/store_attacks.h"

namespace epserve {
namespace {

void allreduce_ranks(Communicator& comm, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    std::vector<float> v(256, static_cast<float>(comm.rank() + 1));
    comm.allreduce(v.data(), v.size(), ReduceOp::kSum);
    float expected = comm.size() * (comm.size() + 1) / 2.0f;
    ASSERT_EQ(v[0], expected);
    ASSERT_EQ(v[255], expected);
  }
}

TEST(StoreAttack, StrangersCannotStopAJob) {
  int code = test::run_ranks(2, [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    allreduce_ranks(*comm, 3);
    std::vector<int> fds;
    if (info.rank == 0) fds = testing::open_attacks(info.store_addr);
    // The last two are silent (nothing, or half a hello): still open while the job works.
    for (size_t i = 0; i + 2 < fds.size(); ++i) {
      ASSERT_GE(fds[i], 0);
      EXPECT_TRUE(testing::closed_by_peer(fds[i], 10000)) << "attack " << i << " was not dropped";
    }
    comm->set_context("after the attack");
    allreduce_ranks(*comm, 3);
    for (int fd : fds) close(fd);
    allreduce_ranks(*comm, 3);
  });
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace epserve
