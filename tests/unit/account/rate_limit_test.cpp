// Tests for postern/account/rate_limit.h: bursts, refill timing on a ManualClock, Retry-After,
// odd inputs, and the keyed limiter's bounded memory.
#include "postern/account/rate_limit.h"

#include <gtest/gtest.h>

#include <string>

namespace postern::account {
namespace {

TEST(AccountTokenBucket, BurstThenRefill) {
  ManualClock clock(1'000'000);
  TokenBucket bucket(3, 2, clock);  // 3 at once, 2 a second
  EXPECT_TRUE(bucket.try_take());
  EXPECT_TRUE(bucket.try_take());
  EXPECT_TRUE(bucket.try_take());
  EXPECT_FALSE(bucket.try_take());
  EXPECT_EQ(bucket.retry_after_ms(), 500);
  clock.advance_ms(499);
  EXPECT_FALSE(bucket.try_take());
  EXPECT_EQ(bucket.retry_after_ms(), 1);
  clock.advance_ms(1);
  EXPECT_TRUE(bucket.try_take());
  EXPECT_FALSE(bucket.try_take());
  // Refill stops at the capacity.
  clock.advance_ms(60'000);
  EXPECT_DOUBLE_EQ(bucket.available(), 3);
  EXPECT_TRUE(bucket.try_take(3));
  EXPECT_FALSE(bucket.try_take(0.5));
}

TEST(AccountTokenBucket, SustainedRateIsTheRefillRate) {
  ManualClock clock(0);
  TokenBucket bucket(RateLimit{10, 4}, clock);
  int allowed = 0;
  // Ten seconds of attempts every 125 ms (half a token each, exact in binary): the burst of 10,
  // then 4 a second, i.e. 79 intervals of refill = 39.5 tokens.
  for (int t = 0; t < 10'000; t += 125) {
    if (bucket.try_take()) ++allowed;
    clock.advance_ms(125);
  }
  EXPECT_EQ(allowed, 10 + 39);
}

TEST(AccountTokenBucket, FractionalAndByteCosts) {
  ManualClock clock(0);
  TokenBucket bytes(1024.0 * 1024, 1024.0 * 1024, clock);  // 1 MiB burst, 1 MiB/s
  EXPECT_TRUE(bytes.try_take(700.0 * 1024));
  EXPECT_FALSE(bytes.try_take(400.0 * 1024));
  EXPECT_EQ(bytes.retry_after_ms(400.0 * 1024), 75);  // 76 KiB missing at 1 MiB/s: 74.2 ms, rounded up
  clock.advance_ms(75);
  EXPECT_TRUE(bytes.try_take(400.0 * 1024));
  EXPECT_TRUE(bytes.try_take(0));
}

TEST(AccountTokenBucket, CostsThatCanNeverBePaid) {
  ManualClock clock(0);
  TokenBucket bucket(5, 1, clock);
  EXPECT_FALSE(bucket.try_take(6));
  EXPECT_EQ(bucket.retry_after_ms(6), kNeverMs);
  EXPECT_FALSE(bucket.try_take(-1));
  EXPECT_DOUBLE_EQ(bucket.available(), 5);
  EXPECT_EQ(bucket.retry_after_ms(5), 0);

  TokenBucket quota(2, 0, clock);  // no refill: a lifetime quota
  EXPECT_TRUE(quota.try_take(2));
  EXPECT_EQ(quota.retry_after_ms(), kNeverMs);
  clock.advance_ms(1'000'000'000);
  EXPECT_FALSE(quota.try_take());
}

TEST(AccountTokenBucket, ClockSteppingBackwardsGrantsNothingTwice) {
  ManualClock clock(10'000);
  TokenBucket bucket(1, 1, clock);
  EXPECT_TRUE(bucket.try_take());
  clock.set_ms(5'000);  // the clock steps back five seconds
  EXPECT_FALSE(bucket.try_take());
  clock.set_ms(10'500);
  EXPECT_FALSE(bucket.try_take());  // only 0.5 s after the take
  clock.set_ms(11'000);
  EXPECT_TRUE(bucket.try_take());
}

TEST(AccountTokenBucket, WaitingTheAdvertisedTimeAlwaysSucceeds) {
  // Rates and costs whose sums are inexact in binary floating point.
  std::uint64_t state = 42;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) / 9007199254740992.0;  // [0, 1)
  };
  for (const RateLimit limit : {RateLimit{3, 0.7}, RateLimit{5, 5.0 / 3600}, RateLimit{1e6, 1.0 / 3},
                                RateLimit{1024.0 * 1024 * 1024, 16.0 * 1024 * 1024}}) {
    ManualClock clock(123'456);
    TokenBucket bucket(limit, clock);
    for (int i = 0; i < 2000; ++i) {
      const double n = next() * limit.capacity;
      if (bucket.try_take(n)) continue;
      const std::int64_t wait = bucket.retry_after_ms(n);
      ASSERT_GT(wait, 0);
      ASSERT_NE(wait, kNeverMs);
      clock.advance_ms(wait);
      ASSERT_TRUE(bucket.try_take(n)) << limit.capacity << " " << n << " " << wait;
    }
  }
}

TEST(AccountRateLimiter, KeysAreIndependent) {
  ManualClock clock(0);
  RateLimiter limiter(RateLimit{2, 1}, 100, clock);
  EXPECT_TRUE(limiter.try_take("alice"));
  EXPECT_TRUE(limiter.try_take("alice"));
  EXPECT_FALSE(limiter.try_take("alice"));
  EXPECT_EQ(limiter.retry_after_ms("alice"), 1000);
  EXPECT_TRUE(limiter.try_take("bob"));
  EXPECT_EQ(limiter.retry_after_ms("bob"), 0);
  EXPECT_EQ(limiter.retry_after_ms("carol"), 0);
  EXPECT_EQ(limiter.retry_after_ms("carol", 3), kNeverMs);
  clock.advance_ms(1000);
  EXPECT_TRUE(limiter.try_take("alice"));
  EXPECT_FALSE(limiter.try_take("alice"));
}

TEST(AccountRateLimiter, OversizedCostIsRefusedWithoutStoringTheKey) {
  ManualClock clock(0);
  RateLimiter limiter(RateLimit{10, 1}, 100, clock);
  EXPECT_FALSE(limiter.try_take("k", 11));
  EXPECT_FALSE(limiter.try_take("k", -1));
  EXPECT_EQ(limiter.size(), 0u);
  EXPECT_TRUE(limiter.try_take("k", 10));
  EXPECT_FALSE(limiter.try_take("k", 11));
  EXPECT_EQ(limiter.size(), 1u);
}

TEST(AccountRateLimiter, FullBucketsAreDropped) {
  ManualClock clock(0);
  RateLimiter limiter(RateLimit{4, 2}, 100, clock);  // refills from empty in 2 s
  EXPECT_TRUE(limiter.try_take("a", 4));
  clock.advance_ms(500);
  EXPECT_TRUE(limiter.try_take("b", 1));
  EXPECT_EQ(limiter.size(), 2u);
  clock.advance_ms(1499);         // "a" at 3.998, "b" at 4 (full)
  EXPECT_EQ(limiter.size(), 2u);  // "a" is the oldest and not yet full, so nothing is dropped
  clock.advance_ms(1);
  EXPECT_EQ(limiter.size(), 0u);
  EXPECT_EQ(limiter.evictions(), 0u);
  // A dropped key behaves exactly like a full bucket.
  EXPECT_TRUE(limiter.try_take("a", 4));
  EXPECT_FALSE(limiter.try_take("a", 1));
}

TEST(AccountRateLimiter, MaxKeysEvictsTheLeastRecentlyUsed) {
  ManualClock clock(0);
  RateLimiter limiter(RateLimit{1, 0.001}, 3, clock);  // each key: one action per 1000 s
  EXPECT_TRUE(limiter.try_take("a"));
  EXPECT_TRUE(limiter.try_take("b"));
  EXPECT_TRUE(limiter.try_take("c"));
  EXPECT_FALSE(limiter.try_take("a"));  // touches "a": now "b" is the least recently used
  EXPECT_TRUE(limiter.try_take("d"));   // evicts "b"
  EXPECT_EQ(limiter.size(), 3u);
  EXPECT_EQ(limiter.evictions(), 1u);
  EXPECT_FALSE(limiter.try_take("a"));
  EXPECT_FALSE(limiter.try_take("c"));
  EXPECT_FALSE(limiter.try_take("d"));
  EXPECT_TRUE(limiter.try_take("b"));  // forgotten, so it starts over (fails open, counted)
  EXPECT_EQ(limiter.evictions(), 2u);
}

TEST(AccountRateLimiter, MemoryStaysBoundedUnderAFloodOfKeys) {
  ManualClock clock(0);
  RateLimiter limiter(RateLimit{5, 1}, 1000, clock);
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE(limiter.try_take("key-" + std::to_string(i)));
    if (i % 100 == 0) clock.advance_ms(1);
  }
  EXPECT_LE(limiter.size(), 1000u);
  // Keys touched 1 ms apart each hold 4 of 5 tokens; after a second they are full and are dropped.
  clock.advance_ms(1000);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(AccountRateLimiter, RecommendedLimitsAreUsable) {
  using namespace recommended_limits;
  for (const RateLimit& l :
       {kRegistrationPerAddress, kChallengesPerAddress, kLoginPerAccount, kLoginPerAddress, kSendsPerAccount,
        kAttachmentBytesPerAccount, kDirectoryLookupsPerAccount}) {
    EXPECT_GE(l.capacity, 1);
    EXPECT_GT(l.refill_per_second, 0);
  }
  ManualClock clock(0);
  RateLimiter registrations(kRegistrationPerAddress, kMaxKeys, clock);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(registrations.try_take("192.0.2.1"));
  EXPECT_FALSE(registrations.try_take("192.0.2.1"));
  EXPECT_EQ(registrations.retry_after_ms("192.0.2.1"), 720'000);  // one every 12 minutes
}

}  // namespace
}  // namespace postern::account
