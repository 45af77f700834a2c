// Symmetric buffers: every rank writes a pattern naming (writer, step) into every rank's buffer,
// signals, and checks what the others wrote; over shared memory (direct stores) and over UCX puts
// (UCX_TLS=tcp,self: no shared memory, so the ranks cannot map each other).
#include <gtest/gtest.h>

#include "comm/symmetric_buffer.h"
#include "harness.h"

namespace epserve {
namespace {

struct Case {
  int ranks;
  bool tcp;
};

class SymmetricTest : public ::testing::TestWithParam<Case> {};

TEST_P(SymmetricTest, PutsAndSignalsArriveInOrder) {
  test::RankRunOptions opts;
  if (GetParam().tcp) opts.env.push_back({"UCX_TLS", "tcp,self"});
  bool tcp = GetParam().tcp;
  int code = test::run_ranks(
      GetParam().ranks,
      [tcp](const RankInfo& info) {
        auto comm = Communicator::create_world(info);
        int n = comm->size(), r = comm->rank();
        const size_t per_writer = 100003;  // int32 values each writer owns in every buffer
        SymmetricBuffer buf(*comm, per_writer * 4 * n);
        for (int q = 0; q < n; ++q) EXPECT_EQ(buf.is_direct(q), q == r || !tcp) << "peer " << q;
        std::vector<int32_t> src(per_writer);
        for (uint64_t step = 1; step <= 20; ++step) {
          for (size_t i = 0; i < per_writer; ++i)
            src[i] = int32_t(r * 1000000 + step * 1000 + i % 997);
          for (int k = 0; k < n; ++k) {
            int peer = (r + k) % n;
            buf.put(peer, r * per_writer * 4, src.data(), per_writer * 4);
            buf.signal(peer, step);
          }
          buf.wait_signals(step, "symmetric test");
          auto* got = static_cast<const int32_t*>(buf.data());
          for (int q = 0; q < n; ++q) {
            for (size_t i : {size_t(0), size_t(5000), per_writer - 1}) {
              ASSERT_EQ(got[q * per_writer + i], int32_t(q * 1000000 + step * 1000 + i % 997))
                  << "writer " << q << " step " << step;
            }
          }
          buf.flush();
          // Nobody overwrites a region before its owner has read it.
          comm->barrier();
        }
      },
      opts);
  EXPECT_EQ(code, 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, SymmetricTest,
                         ::testing::Values(Case{1, false}, Case{2, false}, Case{3, false},
                                           Case{4, false}, Case{2, true}, Case{3, true}),
                         [](const auto& info) {
                           return std::to_string(info.param.ranks) +
                                  (info.param.tcp ? "ranks_tcp" : "ranks_shm");
                         });

}  // namespace
}  // namespace epserve
