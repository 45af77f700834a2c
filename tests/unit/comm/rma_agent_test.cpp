// UCX one-sided writes between two agents (comm/rma_agent.h): the data lands in the receiver's
// registered memory, and a write to a peer that is gone fails within its timeout instead of
// hanging.
#include "comm/rma_agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "support/proc_maps.h"

namespace epserve {
namespace {

// Both kinds of endpoint: to a peer on this host (no peer-failure handling, so UCX may use shared
// memory) and to one on another host (peer-failure handling).
class RmaAgentBothModes : public testing::TestWithParam<bool> {};

TEST_P(RmaAgentBothModes, PutsLandInRegisteredMemory) {
  const bool same_host = GetParam();
  RmaAgent receiver({"", true});
  RmaAgent writer({"", false});
  std::vector<float> target(64, 0.0f), source(16);
  std::iota(source.begin(), source.end(), 1.0f);
  std::string key = receiver.register_memory(target.data(), target.size() * 4);
  const uint64_t base = reinterpret_cast<uint64_t>(target.data());
  writer.write(
      receiver.address(), {key},
      {{source.data(), base + 8 * 4, 8 * 4, 0}, {source.data() + 8, base + 40 * 4, 8 * 4, 0}},
      std::chrono::seconds(10), same_host);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(target[8 + i], source[i]);
    EXPECT_EQ(target[40 + i], source[8 + i]);
  }
  EXPECT_EQ(target[0], 0.0f);
  EXPECT_EQ(target[16], 0.0f);
  EXPECT_EQ(writer.num_peers(), 1u);
}

TEST_P(RmaAgentBothModes, WriteToAGonePeerFailsWithinItsTimeout) {
  const bool same_host = GetParam();
  RmaAgent writer({"", false});
  std::string address, key;
  std::vector<float> target(8);
  uint64_t base = 0;
  {
    RmaAgent receiver({"", true});
    key = receiver.register_memory(target.data(), target.size() * 4);
    address = receiver.address();
    base = reinterpret_cast<uint64_t>(target.data());
    float one = 1;
    writer.write(address, {key}, {{&one, base, 4, 0}}, std::chrono::seconds(10), same_host);
  }
  float two = 2;
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(
      writer.write(address, {key}, {{&two, base, 4, 0}}, std::chrono::seconds(3), same_host),
      Error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
  if (same_host) {
    // Without peer-failure handling a dead peer looks like a stopped one: its flush stays open
    // (draining) until the writer gives up on it.
    EXPECT_EQ(writer.draining(std::chrono::seconds(60)), std::vector<std::string>{address});
    EXPECT_TRUE(writer.draining(std::chrono::milliseconds(0)).empty());
  }
  EXPECT_EQ(writer.num_peers(), 0u);
}

TEST_P(RmaAgentBothModes, PutsLandInAllocatedMemory) {
  RmaAgent receiver({"", true});
  RmaAgent writer({"", false});
  void* address = nullptr;
  std::string key = receiver.allocate_memory(64 * 4, &address);
  ASSERT_NE(address, nullptr);
  float* target = static_cast<float*>(address);
  std::fill(target, target + 64, 0.0f);
  std::vector<float> source(16);
  std::iota(source.begin(), source.end(), 1.0f);
  const uint64_t base = reinterpret_cast<uint64_t>(target);
  writer.write(receiver.address(), {key}, {{source.data(), base + 8 * 4, 16 * 4, 0}},
               std::chrono::seconds(10), GetParam());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(target[8 + i], source[i]);
  EXPECT_EQ(target[7], 0.0f);
  EXPECT_EQ(target[24], 0.0f);
}

// A write that passes its deadline while its puts are queued (here: a receiver whose worker
// nobody progresses, as when a decode rank is stopped; over TCP, UCX emulates the puts with
// messages) keeps draining until they have landed: draining() lists the peer until then, and
// nothing lands after it (the decode side may reuse the memory from that point). Before, the write
// force-closed its endpoint and had no way to tell when its queued puts could no longer land.
TEST_P(RmaAgentBothModes, ATimedOutWriteDrainsUntilItsPutsCanNoLongerLand) {
  const char* old_tls = std::getenv("UCX_TLS");
  const std::string saved = old_tls ? old_tls : "";
  setenv("UCX_TLS", "tcp,self", 1);  // emulated puts whatever the host offers
  RmaAgent receiver({"", false});    // no progress thread: nothing lands until we progress it
  RmaAgent writer({"", false});
  if (old_tls) {
    setenv("UCX_TLS", saved.c_str(), 1);
  } else {
    unsetenv("UCX_TLS");
  }
  const size_t n = 1 << 18;  // 1 MiB
  std::vector<float> target(n, 0.0f), source(n);
  std::iota(source.begin(), source.end(), 1.0f);
  std::string key = receiver.register_memory(target.data(), n * 4);
  const uint64_t base = reinterpret_cast<uint64_t>(target.data());
  std::vector<RmaPut> puts;
  for (size_t i = 0; i < n; i += 4096)
    puts.push_back({source.data() + i, base + i * 4, 4096 * 4, 0});
  EXPECT_THROW(
      writer.write(receiver.address(), {key}, puts, std::chrono::milliseconds(300), GetParam()),
      Error);
  EXPECT_EQ(writer.draining(std::chrono::seconds(60)),
            std::vector<std::string>{receiver.address()});
  // While it drains, another write to that peer is refused at once (not after its own timeout:
  // it would hold every send queued behind it).
  const auto before = std::chrono::steady_clock::now();
  try {
    writer.write(receiver.address(), {key}, {puts[0]}, std::chrono::seconds(60), GetParam());
    ADD_FAILURE() << "a write to a draining peer went through";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("has not yet taken an earlier transfer"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(30));
  // The receiver runs again: the queued puts land, and the writer's flush completes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!writer.draining(std::chrono::seconds(60)).empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the write never drained";
    for (int i = 0; i < 100; ++i) receiver.progress();
  }
  // Drained: every put is in, and no more progress changes anything.
  EXPECT_EQ(target, source);
  for (int i = 0; i < 1000; ++i) receiver.progress();
  EXPECT_EQ(target, source);
  EXPECT_EQ(writer.num_peers(), 1u);  // the endpoint stays for the next write
}

INSTANTIATE_TEST_SUITE_P(RmaAgent, RmaAgentBothModes, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "SameHost" : "OtherHost";
                         });

// Whether UCX may use its shared-memory transports (UCX_TLS unset, or naming them).
bool shared_memory_allowed() {
  const char* tls = std::getenv("UCX_TLS");
  return tls == nullptr || std::string(tls).find("sysv") != std::string::npos ||
         std::string(tls).find("sm") != std::string::npos;
}

// The KV cache of a decode rank lives in such memory: zero-filled, page aligned, shared memory
// (what lets a prefill rank on this host write it directly), and freed by its address.
TEST(RmaAgent, AllocatedMemoryIsZeroedSharedAndFreedByAddress) {
  RmaAgent agent({"", true});
  void* address = nullptr;
  const size_t bytes = size_t(8) << 20;
  agent.allocate_memory(bytes, &address);
  ASSERT_NE(address, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(address) % 4096, 0u);
  const auto* p = static_cast<const unsigned char*>(address);
  EXPECT_EQ(std::count(p, p + bytes, 0), static_cast<std::ptrdiff_t>(bytes));
  if (shared_memory_allowed()) {
    EXPECT_THAT(test::mapping_of(address),
                testing::AnyOf(testing::HasSubstr("SYSV"), testing::HasSubstr("/dev/shm")));
  }
  agent.free_memory(address);
  EXPECT_EQ(test::mapping_of(address).find("SYSV"), std::string::npos);
  EXPECT_THROW(agent.free_memory(address), Error);
}

// On one host, puts into memory UCX allocated are one-sided: they complete with the receiver's
// worker never progressed (the writer copies into the mapped segment); puts into registered heap
// memory are emulated with messages that only the receiver's worker applies.
TEST(RmaAgent, SameHostPutsIntoAllocatedMemoryNeedNoReceiverProgress) {
  if (!shared_memory_allowed()) GTEST_SKIP() << "UCX_TLS has no shared-memory transport";
  RmaAgent receiver({"", false});  // no progress thread, and nobody progresses it
  RmaAgent writer({"", false});
  std::vector<float> source(1 << 18);
  std::iota(source.begin(), source.end(), 1.0f);
  void* address = nullptr;
  std::string key = receiver.allocate_memory(source.size() * 4, &address);
  const uint64_t base = reinterpret_cast<uint64_t>(address);
  writer.write(receiver.address(), {key}, {{source.data(), base, source.size() * 4, 0}},
               std::chrono::seconds(20), true);
  EXPECT_EQ(static_cast<float*>(address)[source.size() - 1], source.back());
  std::vector<float> heap(source.size());
  std::string heap_key = receiver.register_memory(heap.data(), heap.size() * 4);
  EXPECT_THROW(
      writer.write(receiver.address(), {heap_key},
                   {{source.data(), reinterpret_cast<uint64_t>(heap.data()), source.size() * 4, 0}},
                   std::chrono::milliseconds(500), true),
      Error);
}

// Rank processes of one host share memory; the id names the boot and the IPC namespace.
TEST(RmaAgent, HostIdNamesBootAndIpcNamespace) {
  const std::string id = RmaAgent::host_id();
  EXPECT_EQ(id, RmaAgent::host_id());
  EXPECT_THAT(id, testing::HasSubstr("/ipc:["));
  EXPECT_GT(id.find('/'), 30u);  // the boot id comes first
}

}  // namespace
}  // namespace epserve
