// The UCX KV agents of a prefill and a decode rank in one process (disagg/kv_agent.h), as the
// ranks use them: the decode rank's KV cache lives in one block of shared memory UCX allocated
// (or on the heap when told so), a prefill rank's puts land in its reserved slots, and the cache
// may outlive its agent (the server's shutdown order).
#include "disagg/kv_agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "support/proc_maps.h"

namespace epserve {
namespace {

KvMemory memory_of(KvCache& cache) {
  KvMemory m;
  for (int64_t l = 0; l < 2; ++l) {
    m.k.push_back(cache.k(l));
    m.v.push_back(cache.v(l));
  }
  m.num_slots = cache.num_slots();
  m.k_width = m.v_width = 8;
  m.num_kv_heads = 2;
  m.head_dim = 4;
  return m;
}

// Prefill slots 0..3 into decode slots {9, 10, 3, 4}; returns the mappings holding the decode
// cache's K and V pools.
std::set<std::string> transfer(bool allocate_kv, bool* external) {
  auto decode = make_ucx_kv_agent_factory({"decode", "", std::chrono::seconds(10), allocate_kv})();
  auto prefill = make_ucx_kv_agent_factory({"prefill", "", std::chrono::seconds(10)})();
  auto decode_cache = std::make_unique<KvCache>(
      2, 16, KvLayout{8, 8}, [&](size_t bytes) { return decode->allocate_kv(bytes); });
  KvCache prefill_cache(2, 8, KvLayout{8, 8},
                        [&](size_t bytes) { return prefill->allocate_kv(bytes); });
  *external = decode_cache->external();
  std::set<std::string> mappings;
  for (int64_t l = 0; l < 2; ++l) {
    mappings.insert(test::mapping_name(decode_cache->k(l)));
    mappings.insert(test::mapping_name(decode_cache->v(l)));
  }
  EXPECT_FALSE(prefill_cache.external());  // a prefill rank is not written into
  decode->attach(memory_of(*decode_cache));
  prefill->attach(memory_of(prefill_cache));
  for (int64_t l = 0; l < 2; ++l) {
    std::iota(prefill_cache.k(l), prefill_cache.k(l) + 64, 1000.0f * l);
    std::iota(prefill_cache.v(l), prefill_cache.v(l) + 64, 1000.0f * l + 500);
  }
  nlohmann::json description = decode->describe();
  const std::vector<int32_t> dst = {9, 10, 3, 4};
  const int64_t bytes = prefill->send({{"ranks", {description}}, {"slots", dst}}, {0, 1, 2, 3});
  EXPECT_EQ(bytes, 2 * 2 * 4 * 8 * 4);
  decode.reset();  // the agent ends first; the cache keeps its memory
  for (int64_t l = 0; l < 2; ++l) {
    for (int i = 0; i < 4; ++i) {
      for (int f = 0; f < 8; ++f) {
        EXPECT_EQ(decode_cache->k(l)[dst[i] * 8 + f], prefill_cache.k(l)[i * 8 + f]);
        EXPECT_EQ(decode_cache->v(l)[dst[i] * 8 + f], prefill_cache.v(l)[i * 8 + f]);
      }
    }
    EXPECT_EQ(decode_cache->k(l)[0], 0.0f);
    EXPECT_EQ(decode_cache->v(l)[15 * 8 + 7], 0.0f);
  }
  decode_cache.reset();
  EXPECT_EQ(description.at("k").size(), 2u);
  EXPECT_EQ(description.at("v").size(), 2u);
  EXPECT_EQ(description.at("keys").size(), 4u);
  return mappings;
}

TEST(UcxKvAgent, DecodeCacheInUcxSharedMemoryTakesPuts) {
  bool external = false;
  std::set<std::string> mappings = transfer(true, &external);
  EXPECT_TRUE(external);
  ASSERT_EQ(mappings.size(), 1u);            // one block
  const char* tls = std::getenv("UCX_TLS");  // without shared-memory transports: mmap
  if (tls == nullptr || std::string(tls).find("sysv") != std::string::npos) {
    EXPECT_THAT(*mappings.begin(),
                testing::AnyOf(testing::HasSubstr("SYSV"), testing::HasSubstr("/dev/shm")));
  }
}

TEST(UcxKvAgent, DecodeCacheOnTheHeapTakesPuts) {
  bool external = true;
  std::set<std::string> mappings = transfer(false, &external);
  EXPECT_FALSE(external);
  for (const auto& m : mappings) EXPECT_EQ(m.find("SYSV"), std::string::npos) << m;
}

}  // namespace
}  // namespace epserve
