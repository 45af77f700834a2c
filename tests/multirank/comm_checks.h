// Checks shared by the one-node and the two-namespace communicator tests: every collective on
// seeded inputs, compared exactly with a reference folded locally in rank order. Returns a digest
// of the results so that two runs (one node, two nodes) can be compared bit for bit.
#pragma once

#include <cstdint>

#include "comm/communicator.h"

namespace epserve::test {

uint64_t check_collectives(Communicator& comm);

}  // namespace epserve::test
