// Where the KV cache's memory comes from (model/kv_cache.h): with an allocator, every layer's K
// and V pool is a view into its one block, page aligned and apart; the block lives as long as the
// cache; an allocator that gives nothing leaves the cache on the heap, zero-filled as before.
#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace epserve {
namespace {

TEST(KvCache, PoolsAreAlignedViewsIntoTheAllocatorsBlock) {
  const KvLayout layout{24, 16};
  size_t asked = 0;
  std::weak_ptr<void> held;
  char* block = nullptr;
  {
    KvCache cache(3, 10, layout, [&](size_t bytes) {
      asked = bytes;
      block = static_cast<char*>(std::aligned_alloc(4096, bytes));
      std::memset(block, 0, bytes);
      std::shared_ptr<void> owner(block, [](void* p) { std::free(p); });
      held = owner;
      return KvStorage{block, owner};
    });
    EXPECT_TRUE(cache.external());
    EXPECT_EQ(asked, 3u * 2 * 4096);  // 960 and 640 bytes, each rounded up to a page
    for (int64_t l = 0; l < 3; ++l) {
      char* k = reinterpret_cast<char*>(cache.k(l));
      char* v = reinterpret_cast<char*>(cache.v(l));
      EXPECT_EQ(k, block + l * 2 * 4096);
      EXPECT_EQ(v, k + 4096);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(k) % 4096, 0u);
      EXPECT_LE(v + 10 * 16 * 4, block + asked);
      EXPECT_EQ(cache.k(l)[10 * 24 - 1], 0.0f);
    }
    EXPECT_FALSE(held.expired());
  }
  EXPECT_TRUE(held.expired());  // the cache freed its block
}

TEST(KvCache, AnAllocatorWithoutMemoryLeavesTheCacheOnTheHeap) {
  int calls = 0;
  KvCache cache(2, 8, KvLayout{576, 0}, [&](size_t) {
    ++calls;
    return KvStorage{};
  });
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(cache.external());
  EXPECT_EQ(cache.v(0), nullptr);
  for (int64_t i = 0; i < 8 * 576; ++i) ASSERT_EQ(cache.k(1)[i], 0.0f);
}

}  // namespace
}  // namespace epserve
