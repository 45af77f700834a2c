// Dispatch and combine in both modes over W = 1..4 ranks, DeepEP style: payloads encode their
// origin and everything is checked exactly against a brute-force reference (dispatch_checks.h).
#include <gtest/gtest.h>

#include "dispatch_checks.h"
#include "harness.h"

namespace epserve {
namespace {

struct Case {
  int ranks;
  DispatchMode mode;
};

class DispatchTest : public ::testing::TestWithParam<Case> {};

std::unique_ptr<Dispatcher> make(Communicator& comm, DispatchMode mode, const test::DispatchCase& c,
                                 bool expand = true) {
  DispatchConfig config;
  config.hidden = c.hidden;
  config.num_topk = c.num_topk;
  config.num_physical_experts = c.experts_per_rank * comm.size();
  config.num_max_dispatch_tokens_per_rank = c.capacity;
  config.low_latency_expand = expand;
  return make_dispatcher(mode, comm, config);
}

TEST_P(DispatchTest, RoutesExactlyAndCombinesBitIdentically) {
  DispatchMode mode = GetParam().mode;
  int code = test::run_ranks(GetParam().ranks, [mode](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    test::DispatchCase c;
    auto dispatcher = make(*comm, mode, c);
    using test::Routing;
    int seed = 1;
    for (Routing routing : {Routing::kRandom, Routing::kAllOnOneRank, Routing::kOnlyRankZero,
                            Routing::kSomeRanksEmpty, Routing::kNoTokens, Routing::kRandom}) {
      c.routing = routing;
      c.seed = seed++;
      comm->set_context("routing " + std::to_string(int(routing)));
      test::check_dispatch_round(*comm, *dispatcher, c);
    }
    // Top-k equal to the experts a rank holds, and a larger hidden size.
    test::DispatchCase wide;
    wide.num_topk = 5;
    wide.hidden = 1031;
    wide.routing = Routing::kAllOnOneRank;
    auto wide_dispatcher = make(*comm, mode, wide);
    test::check_dispatch_round(*comm, *wide_dispatcher, wide);
    // Two batches in flight (what two-batch overlap does).
    test::DispatchCase a, b;
    a.seed = 11;
    b.seed = 12;
    b.routing = Routing::kAllOnOneRank;
    b.num_tokens = 17;
    test::check_two_in_flight(*comm, *dispatcher, a, b);
    test::check_dispatch_round(*comm, *dispatcher, a);
    // Normal mode given the most tokens per rank: each source writes into its own region and
    // sends its counts with its rows (no count round); the receiver gets the same rows in the
    // same order. The bound is tight (40: some rank sends all its tokens to one rank), loose,
    // and grows between dispatches.
    if (mode != DispatchMode::kNormal) return;
    seed = 21;
    for (int64_t most : {40, 100, 40}) {
      for (Routing routing : {Routing::kRandom, Routing::kAllOnOneRank, Routing::kOnlyRankZero,
                              Routing::kSomeRanksEmpty, Routing::kNoTokens}) {
        c.routing = routing;
        c.seed = seed++;
        c.max_tokens_per_rank = most;
        test::check_dispatch_round(*comm, *dispatcher, c);
      }
    }
    a.max_tokens_per_rank = b.max_tokens_per_rank = 40;
    test::check_two_in_flight(*comm, *dispatcher, a, b);
    wide.max_tokens_per_rank = 40;
    test::check_dispatch_round(*comm, *wide_dispatcher, wide);
  });
  EXPECT_EQ(code, 0);
}

class DispatchModesTest : public ::testing::TestWithParam<int> {};

TEST_P(DispatchModesTest, ResultsDoNotDependOnMode) {
  // The same routing through both modes gives the same bits.
  int code = test::run_ranks(GetParam(), [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    test::DispatchCase c;
    c.seed = 5;
    auto normal = make(*comm, DispatchMode::kNormal, c);
    auto low_latency = make(*comm, DispatchMode::kLowLatency, c);
    EXPECT_EQ(test::check_dispatch_round(*comm, *normal, c),
              test::check_dispatch_round(*comm, *low_latency, c));
    // Agreement on the mode: normal as soon as one rank has prefill tokens or too many tokens.
    EXPECT_EQ(agree_dispatch_mode(*comm, false, 3, 64), DispatchMode::kLowLatency);
    EXPECT_EQ(agree_dispatch_mode(*comm, comm->rank() == comm->size() - 1, 3, 64),
              DispatchMode::kNormal);
    EXPECT_EQ(agree_dispatch_mode(*comm, false, comm->rank() == 0 ? 65 : 0, 64),
              DispatchMode::kNormal);
    // The same allreduce gives the most tokens of any rank (the normal dispatch's regions).
    int64_t most = 0;
    agree_dispatch_mode(*comm, true, 10 + comm->rank(), 64, &most);
    EXPECT_EQ(most, 10 + comm->size() - 1);
  });
  EXPECT_EQ(code, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Ranks, DispatchTest,
    ::testing::Values(Case{1, DispatchMode::kNormal}, Case{2, DispatchMode::kNormal},
                      Case{3, DispatchMode::kNormal}, Case{4, DispatchMode::kNormal},
                      Case{1, DispatchMode::kLowLatency}, Case{2, DispatchMode::kLowLatency},
                      Case{3, DispatchMode::kLowLatency}, Case{4, DispatchMode::kLowLatency}),
    [](const auto& info) {
      return std::to_string(info.param.ranks) +
             (info.param.mode == DispatchMode::kNormal ? "ranks_normal" : "ranks_low_latency");
    });

INSTANTIATE_TEST_SUITE_P(Ranks, DispatchModesTest, ::testing::Values(1, 2, 3, 4));

// Without shared memory the ranks cannot map each other's buffers: low-latency writes become UCX
// puts and normal-mode messages go over TCP, on one node.
TEST(DispatchOverTcp, BothModesRouteExactly) {
  test::RankRunOptions opts;
  opts.env.push_back({"UCX_TLS", "tcp,self"});
  int code = test::run_ranks(
      3,
      [](const RankInfo& info) {
        auto comm = Communicator::create_world(info);
        for (DispatchMode mode : {DispatchMode::kNormal, DispatchMode::kLowLatency}) {
          test::DispatchCase c;
          auto dispatcher = make(*comm, mode, c);
          test::check_dispatch_round(*comm, *dispatcher, c);
          c.routing = test::Routing::kSomeRanksEmpty;
          test::check_dispatch_round(*comm, *dispatcher, c);
          test::DispatchCase b = c;
          b.routing = test::Routing::kAllOnOneRank;
          test::check_two_in_flight(*comm, *dispatcher, c, b);
          if (mode == DispatchMode::kNormal) {  // rows, metadata and counts as puts
            c.max_tokens_per_rank = b.max_tokens_per_rank = 40;
            test::check_dispatch_round(*comm, *dispatcher, c);
            test::check_two_in_flight(*comm, *dispatcher, c, b);
          }
        }
      },
      opts);
  EXPECT_EQ(code, 0);
}

// The opt-in layout without the receive-side copy routes exactly the same rows.
TEST(LowLatencyDispatch, WithoutExpansionRoutesExactly) {
  int code = test::run_ranks(3, [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    test::DispatchCase c;
    auto expanded = make(*comm, DispatchMode::kLowLatency, c, true);
    auto in_place = make(*comm, DispatchMode::kLowLatency, c, false);
    using test::Routing;
    for (Routing routing :
         {Routing::kRandom, Routing::kAllOnOneRank, Routing::kSomeRanksEmpty, Routing::kNoTokens}) {
      c.routing = routing;
      EXPECT_EQ(test::check_dispatch_round(*comm, *expanded, c),
                test::check_dispatch_round(*comm, *in_place, c));
    }
    test::DispatchCase b = c;
    b.routing = Routing::kOnlyRankZero;
    test::check_two_in_flight(*comm, *in_place, c, b);
  });
  EXPECT_EQ(code, 0);
}

TEST(LowLatencyDispatch, OverCapacityIsAnErrorNamingTheSetting) {
  int code = test::run_ranks(2, [](const RankInfo& info) {
    auto comm = Communicator::create_world(info);
    DispatchConfig config{16, 2, 4, 8};
    auto dispatcher = make_dispatcher(DispatchMode::kLowLatency, *comm, config);
    std::vector<float> x(9 * 16, 1.0f), w(9 * 2, 0.5f);
    std::vector<int32_t> topk(9 * 2, 0);
    for (int t = 0; t < 9; ++t) topk[t * 2 + 1] = 3;
    try {
      dispatcher->dispatch({x.data(), topk.data(), w.data(), 9, nullptr});
      ADD_FAILURE() << "9 tokens passed a capacity of 8";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(kNumMaxDispatchTokensEnv), std::string::npos)
          << e.what();
    }
    // The dispatcher still works after the refused batch.
    auto h = dispatcher->dispatch({x.data(), topk.data(), w.data(), 8, nullptr});
    EXPECT_EQ(h.output().num_recv_tokens, 16);  // 8 tokens from each rank to one local expert
    std::vector<float> out(8 * 16);
    dispatcher->combine(h.y_buffer(), h, out.data());
  });
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace epserve
