#include "yunzhi/base/clock.h"

#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace yunzhi {
namespace {

using std::chrono::milliseconds;

TEST(FormatRfc3339Ms, FormatsUtcWithMilliseconds) {
  EXPECT_EQ(FormatRfc3339Ms(1795568523123), "2026-11-25T01:02:03.123Z");
  EXPECT_EQ(FormatRfc3339Ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Ms(7), "1970-01-01T00:00:00.007Z");
  EXPECT_EQ(FormatRfc3339Ms(1709251199999), "2024-02-29T23:59:59.999Z");  // leap day
  EXPECT_EQ(FormatRfc3339Ms(1709251200000), "2024-03-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Ms(-1), "1969-12-31T23:59:59.999Z");  // floors, not truncates
  EXPECT_EQ(FormatRfc3339Ms(253402300799999), "9999-12-31T23:59:59.999Z");
}

TEST(FakeClock, StartsWhereToldAndStandsStill) {
  FakeClock clock(1795568523123);
  EXPECT_EQ(clock.NowUnixMs(), 1795568523123);
  const auto t0 = clock.SteadyNow();
  EXPECT_EQ(clock.SteadyNow(), t0);
  EXPECT_NE(t0, std::chrono::steady_clock::time_point{}) << "must not look like 'unset'";
  EXPECT_EQ(FakeClock().NowUnixMs(), FakeClock::kDefaultStartUnixMs);
}

TEST(FakeClock, AdvanceMovesWallAndSteadyTime) {
  FakeClock clock(1000);
  const auto t0 = clock.SteadyNow();
  clock.Advance(milliseconds(1500));
  EXPECT_EQ(clock.NowUnixMs(), 2500);
  EXPECT_EQ(clock.SteadyNow() - t0, milliseconds(1500));
  clock.Advance(milliseconds(0));
  EXPECT_EQ(clock.NowUnixMs(), 2500);
}

TEST(FakeClock, SetUnixMsMovesOnlyWallTime) {
  FakeClock clock(5000);
  const auto t0 = clock.SteadyNow();
  clock.SetUnixMs(1000);  // backwards, like a corrected system clock
  EXPECT_EQ(clock.NowUnixMs(), 1000);
  EXPECT_EQ(clock.SteadyNow(), t0);
}

TEST(FakeClock, ConcurrentAdvancesAllCount) {
  FakeClock clock(0);
  const auto t0 = clock.SteadyNow();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        clock.Advance(milliseconds(1));
        (void)clock.NowUnixMs();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(clock.NowUnixMs(), 4000);
  EXPECT_EQ(clock.SteadyNow() - t0, milliseconds(4000));
}

TEST(FakeClockDeathTest, AdvanceBackwardsIsAProgrammerError) {
  FakeClock clock;
  EXPECT_DEATH(clock.Advance(milliseconds(-1)), "YZ_CHECK failed");
}

TEST(SystemClock, IsOneProcessWideRealClock) {
  Clock* clock = Clock::System();
  ASSERT_NE(clock, nullptr);
  EXPECT_EQ(clock, Clock::System());
  const auto before =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const int64_t now = clock->NowUnixMs();
  const auto after =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
  const auto s0 = clock->SteadyNow();
  EXPECT_LE(s0, clock->SteadyNow());
}

}  // namespace
}  // namespace yunzhi
