// The router's concurrency limiter: the token bucket's arithmetic on given times (full at start,
// refill capped at the capacity, tokens given back), and the limiter's queue outcomes.
#include <gtest/gtest.h>

#include <thread>

#include "router/concurrency_limiter.h"

namespace epserve {
namespace {

TEST(TokenBucket, StartsFullRefillsAtItsRateAndNeverAboveItsCapacity) {
  TokenBucket bucket(2, 4, 0.0);  // 2 tokens, 4 per second
  EXPECT_TRUE(bucket.try_take(0.0));
  EXPECT_TRUE(bucket.try_take(0.0));
  EXPECT_FALSE(bucket.try_take(0.0));
  EXPECT_DOUBLE_EQ(bucket.seconds_until_token(0.0), 0.25);
  EXPECT_FALSE(bucket.try_take(0.2));  // 0.8 tokens
  EXPECT_TRUE(bucket.try_take(0.25));
  EXPECT_DOUBLE_EQ(bucket.tokens(), 0.0);
  bucket.refill(100.0);
  EXPECT_DOUBLE_EQ(bucket.tokens(), 2.0);
  bucket.give_back();  // a finished request's token does not overfill it
  EXPECT_DOUBLE_EQ(bucket.tokens(), 2.0);
  EXPECT_TRUE(bucket.try_take(100.0));
  bucket.give_back();
  EXPECT_DOUBLE_EQ(bucket.tokens(), 2.0);
}

TEST(ConcurrencyLimiter, NoQueueIsA429AtOnce) {
  ConcurrencyLimiter limiter(1, 1, 0, 60);
  EXPECT_EQ(limiter.acquire(), Admission::admitted);
  EXPECT_EQ(limiter.acquire(), Admission::queue_full);
}

TEST(ConcurrencyLimiter, AFullQueueIsA429) {
  ConcurrencyLimiter limiter(1, 1, 1, 60);
  ASSERT_EQ(limiter.acquire(), Admission::admitted);
  Admission waited = Admission::queue_full;
  std::thread waiter([&] { waited = limiter.acquire(); });
  while (limiter.queued() == 0) std::this_thread::yield();
  EXPECT_EQ(limiter.acquire(), Admission::queue_full);  // its one place is taken
  limiter.release();
  waiter.join();
  EXPECT_EQ(waited, Admission::admitted);
}

TEST(ConcurrencyLimiter, AWaitPastTheQueueTimeoutIsA408) {
  ConcurrencyLimiter limiter(1, 1, 4, 0);
  ASSERT_EQ(limiter.acquire(), Admission::admitted);
  EXPECT_EQ(limiter.acquire(), Admission::queue_timeout);
  EXPECT_EQ(limiter.queued(), 0);
}

TEST(ConcurrencyLimiter, AReturnedTokenAdmitsTheFirstWaiter) {
  // A refill would take a second, longer than the queue wait: only release() can admit it.
  ConcurrencyLimiter limiter(1, 1, 4, 0.9);
  ASSERT_EQ(limiter.acquire(), Admission::admitted);
  Admission waited = Admission::queue_full;
  std::thread waiter([&] { waited = limiter.acquire(); });
  while (limiter.queued() == 0) std::this_thread::yield();
  limiter.release();
  waiter.join();
  EXPECT_EQ(waited, Admission::admitted);
}

}  // namespace
}  // namespace epserve
