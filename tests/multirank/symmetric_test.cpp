// Symmetric buffers: every rank writes a pattern naming (writer, step) into every rank's buffer,
// signals, and checks what the others wrote; over shared memory (direct stores) and over UCX puts
// (UCX_TLS=tcp,self: no shared memory, so the ranks cannot map each other).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

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

// Over UCX puts, put and signal return without waiting for the transfer: a put larger than a
// socket's buffer is still pending after its signal (the old signal flushed every earlier put to
// the peer first), and two signals to one peer may be in flight at once.
TEST(SymmetricDeferred, SignalDoesNotWaitForEarlierPuts) {
  test::RankRunOptions opts;
  opts.env.push_back({"UCX_TLS", "tcp,self"});
  opts.env.push_back({"EPSERVE_UCX_PROGRESS_THREAD", "0"});
  int code = test::run_ranks(
      2,
      [](const RankInfo& info) {
        auto comm = Communicator::create_world(info);
        const int r = comm->rank(), peer = 1 - r;
        const size_t big = 32u << 20, small = 4096;
        SymmetricBuffer buf(*comm, big + small);
        std::vector<char> src(big, char(10 + r)), tail(small, char(20 + r));
        // Rank 1 stays out of UCX for a while, so nothing drains rank 0's socket: its 32 MB put
        // (several socket buffers) cannot complete unless signal() waits for it. On an idle
        // machine, with both ranks progressing, the transfer could finish in time by itself.
        if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
        buf.put(peer, 0, src.data(), big);
        buf.signal(peer, 1);
        buf.signal(r, 1);
        if (r == 0) EXPECT_TRUE(buf.has_pending()) << "the 32 MB put completed inside signal()";
        buf.put(peer, big, tail.data(), small);
        buf.signal(peer, 2);
        buf.signal(r, 2);
        buf.wait_signals(2, "deferred test");
        auto* got = static_cast<const char*>(buf.data());
        EXPECT_EQ(got[0], char(10 + peer));
        EXPECT_EQ(got[big - 1], char(10 + peer));
        EXPECT_EQ(got[big + small - 1], char(20 + peer));
        buf.flush();
        EXPECT_FALSE(buf.has_pending());
        comm->barrier();
      },
      opts);
  EXPECT_EQ(code, 0);
}

// With the progress thread, a put moves while the sending rank's own thread makes no UCX call at
// all (here: it waits on the store for the receiver's word). Without the thread the put would sit
// in the socket and both ranks would time out.
TEST(SymmetricDeferred, TheProgressThreadMovesAPutWhileTheSenderComputes) {
  test::RankRunOptions opts;
  opts.env.push_back({"UCX_TLS", "tcp,self"});
  opts.env.push_back({"EPSERVE_UCX_PROGRESS_THREAD", "1"});
  int code = test::run_ranks(
      2,
      [](const RankInfo& info) {
        CommOptions options;
        options.timeout = std::chrono::seconds(20);
        auto comm = Communicator::create_world(info, options);
        EXPECT_TRUE(comm->world().has_progress_thread());
        const int r = comm->rank();
        const size_t big = 64u << 20;
        SymmetricBuffer buf(*comm, big);
        std::vector<char> src(big, char(7));
        StoreClient& store = *comm->world().store();
        if (r == 0) {
          // Rank 1 is not progressing yet: most of the put stays queued when put() returns.
          buf.put(1, 0, src.data(), big);
          buf.signal(1, 1);
          buf.signal(0, 1);
          store.set("deferred/sent", "yes");
          // No UCX call on this thread until rank 1 says it has everything.
          store.get("deferred/received", std::chrono::seconds(20), "rank 1's word");
        } else {
          store.get("deferred/sent", std::chrono::seconds(20), "rank 0's word");
          buf.signal(0, 1);
          buf.signal(1, 1);
          buf.wait_signals(1, "progress test");
          auto* got = static_cast<const char*>(buf.data());
          EXPECT_EQ(got[0], char(7));
          EXPECT_EQ(got[big - 1], char(7));
          store.set("deferred/received", "yes");
        }
        buf.wait_signals(1, "progress test");
        buf.flush();
        comm->barrier();
      },
      opts);
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace epserve
