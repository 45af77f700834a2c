#include "runtime/prefix_cache.h"

#include <gtest/gtest.h>

namespace epserve {
namespace {

std::vector<int32_t> tokens(int first, int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(first + i);
  return t;
}

TEST(PrefixCache, MatchesWholePagesAndEvictsLeastRecentlyUsedFirst) {
  SlotAllocator allocator(64, 4);  // 16 pages
  PrefixCache cache(allocator, true);
  auto a = tokens(100, 8), b = tokens(200, 8);
  std::vector<int32_t> pages_a, pages_b;
  ASSERT_TRUE(allocator.reserve(pages_a, 8));
  ASSERT_TRUE(allocator.reserve(pages_b, 8));
  cache.insert(a, 8, pages_a);
  cache.insert(b, 8, pages_b);
  EXPECT_EQ(cache.cached_pages(), 4);
  EXPECT_EQ(allocator.num_free_pages(), 12);

  // A prompt sharing a's first 6 tokens matches one whole page (4 tokens).
  auto prompt = tokens(100, 6);
  PrefixCache::Match m = cache.match(prompt, 6);
  EXPECT_EQ(m.num_tokens, 4);
  ASSERT_EQ(m.pages.size(), 1u);
  cache.release(m.node);
  // All of a, used again.
  PrefixCache::Match whole = cache.match(a, 8);
  EXPECT_EQ(whole.num_tokens, 8);
  cache.release(whole.node);

  // a was used last: evicting two pages takes b's (leaf first, then its parent).
  EXPECT_TRUE(cache.evict(14));
  EXPECT_EQ(cache.cached_pages(), 2);
  PrefixCache::Match gone = cache.match(b, 8);
  EXPECT_EQ(gone.num_tokens, 0);
  cache.release(gone.node);
  PrefixCache::Match again = cache.match(a, 8);
  EXPECT_EQ(again.num_tokens, 8);

  // Pinned pages are not evicted; released they are.
  EXPECT_FALSE(cache.evict(16));
  EXPECT_FALSE(cache.flush());
  cache.release(again.node);
  EXPECT_TRUE(cache.flush());
  EXPECT_EQ(allocator.num_free_pages(), 16);
}

TEST(PrefixCache, FlushOfManyEntriesEmptiesTheCache) {
  SlotAllocator allocator(1 << 16, 1);
  PrefixCache cache(allocator, true);
  for (int r = 0; r < 64; ++r) {
    auto t = tokens(r * 10000, 1000);
    std::vector<int32_t> pages;
    ASSERT_TRUE(allocator.reserve(pages, 1000));
    cache.insert(t, 1000, pages);
  }
  EXPECT_EQ(cache.cached_pages(), 64000);
  EXPECT_TRUE(cache.flush());
  EXPECT_EQ(cache.cached_pages(), 0);
  EXPECT_EQ(allocator.num_free_pages(), 1 << 16);
}

}  // namespace
}  // namespace epserve
