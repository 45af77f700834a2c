// DeepEP-style dispatch checks shared by the one-node and two-namespace tests. Payloads encode
// (source rank, token index, hidden index); "experts" compute y = x * (global expert + 1) + slot;
// every rank generates every rank's routing from seeds, so routing, counts, order and the
// combined output are checked exactly against a brute-force reference. Returns a digest of the
// combined outputs (bit-identical across modes, layouts and runs).
#pragma once

#include <cstdint>

#include "ep/dispatcher.h"

namespace epserve::test {

enum class Routing {
  kRandom,          // distinct random experts, some slots -1
  kAllOnOneRank,    // every token's experts sit on one rank (token-dependent)
  kOnlyRankZero,    // every expert on rank 0: the other ranks receive nothing
  kSomeRanksEmpty,  // ranks 1 and 3 send no tokens
  kNoTokens,        // nobody sends anything
};

struct DispatchCase {
  int num_tokens = 40;  // per rank (ranks may have fewer; see Routing)
  int hidden = 96;
  int num_topk = 4;
  int experts_per_rank = 5;
  int capacity = 64;  // low-latency
  // Normal mode: the agreed most tokens per rank (no count round; see DispatchInput); 0: a count
  // round.
  int64_t max_tokens_per_rank = 0;
  Routing routing = Routing::kRandom;
  int seed = 1;
};

// One dispatch + expert compute + combine on `dispatcher`; checks everything; returns a digest.
uint64_t check_dispatch_round(Communicator& comm, Dispatcher& dispatcher, const DispatchCase& c);

// Two batches in flight: send A, send B, recv A, recv B, combine A, combine B; checks both.
uint64_t check_two_in_flight(Communicator& comm, Dispatcher& dispatcher, const DispatchCase& a,
                             const DispatchCase& b);

}  // namespace epserve::test
