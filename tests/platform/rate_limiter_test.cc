#include "yunzhi/platform/rate_limiter.h"

#include <gtest/gtest.h>

namespace yunzhi::platform {
namespace {

TEST(RateLimiterTest, AllowsBurstThenRefusesWithRetryAfter) {
  FakeClock clock;
  RateLimiter limiter(clock);
  for (int i = 0; i < 3; ++i) {
    auto d = limiter.Acquire("k", 3);
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 2 - i);
    EXPECT_EQ(d.limit, 3);
  }
  auto refused = limiter.Acquire("k", 3);
  EXPECT_FALSE(refused.allowed);
  // 3 per minute refills one token every 20 s.
  EXPECT_EQ(refused.retry_after_s, 20);
  clock.Advance(std::chrono::seconds(19));
  EXPECT_FALSE(limiter.Acquire("k", 3).allowed);
  clock.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(limiter.Acquire("k", 3).allowed);
}

TEST(RateLimiterTest, KeysAreIndependentAndZeroMeansUnlimited) {
  FakeClock clock;
  RateLimiter limiter(clock);
  ASSERT_TRUE(limiter.Acquire("a", 1).allowed);
  EXPECT_FALSE(limiter.Acquire("a", 1).allowed);
  EXPECT_TRUE(limiter.Acquire("b", 1).allowed);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Acquire("c", 0).allowed);
}

TEST(RateLimiterTest, RefillNeverExceedsCapacity) {
  FakeClock clock;
  RateLimiter limiter(clock);
  ASSERT_TRUE(limiter.Acquire("k", 2).allowed);
  clock.Advance(std::chrono::hours(1));
  EXPECT_TRUE(limiter.Acquire("k", 2).allowed);
  EXPECT_TRUE(limiter.Acquire("k", 2).allowed);
  EXPECT_FALSE(limiter.Acquire("k", 2).allowed);
}

TEST(RateLimiterTest, LoweredLimitShrinksBucket) {
  FakeClock clock;
  RateLimiter limiter(clock);
  ASSERT_TRUE(limiter.Acquire("k", 100).allowed);  // 99 left
  ASSERT_TRUE(limiter.Acquire("k", 1).allowed);    // capped to 1, then takes it
  EXPECT_FALSE(limiter.Acquire("k", 1).allowed);
}

}  // namespace
}  // namespace yunzhi::platform
