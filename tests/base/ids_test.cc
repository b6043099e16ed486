#include "yunzhi/base/ids.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/base/clock.h"

namespace yunzhi {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

TEST(Ids, HasPrefixAndTwentySixCrockfordCharacters) {
  const std::string id = NewId("req");
  ASSERT_EQ(id.size(), 4 + kUlidChars) << id;
  EXPECT_EQ(id.substr(0, 4), "req_");
  for (char c : id.substr(4)) EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << id;
  EXPECT_TRUE(IsValidId(id, "req"));
}

TEST(Ids, EncodesTheClockMillisecondsInTheFirstTenCharacters) {
  // The example from the ULID specification: 1469918176385 ms -> "01ARYZ6S41".
  FakeClock clock(1469918176385);
  const std::string id = NewId("x", clock);
  EXPECT_EQ(id.substr(2, 10), "01ARYZ6S41");
  EXPECT_EQ(IdTimestampMs(id), 1469918176385);

  clock.SetUnixMs(0);
  EXPECT_EQ(NewId("x", clock).substr(2, 10), "0000000000");
  clock.SetUnixMs((int64_t{1} << 48) - 1);
  const std::string last = NewId("x", clock);
  EXPECT_EQ(last.substr(2, 10), "7ZZZZZZZZZ");
  EXPECT_EQ(IdTimestampMs(last), (int64_t{1} << 48) - 1);
}

TEST(Ids, SortByCreationTime) {
  FakeClock clock(1795568523123);
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    ids.push_back(NewId("tnt", clock));
    clock.Advance(std::chrono::milliseconds(i % 3 == 0 ? 1 : 997));
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(IdTimestampMs(ids.front()), 1795568523123);
}

TEST(Ids, StrictlyIncreasingWithinOneMillisecond) {
  FakeClock clock(1795568523123);
  std::string previous = NewId("req", clock);
  for (int i = 0; i < 20000; ++i) {
    const std::string id = NewId("req", clock);
    ASSERT_LT(previous, id) << "at " << i;
    EXPECT_EQ(IdTimestampMs(id), 1795568523123);
    previous = id;
  }
}

TEST(Ids, UniqueAndOrderedPerThreadUnderConcurrency) {
  FakeClock clock(1795568523123);  // all threads in the same millisecond: the hardest case
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(NewId("req", clock));
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& v : made) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(Ids, RandomPartDiffersAcrossMilliseconds) {
  FakeClock clock;
  const std::string a = NewId("k", clock);
  clock.Advance(std::chrono::milliseconds(1));
  const std::string b = NewId("k", clock);
  // Not a+1: a fresh random part is drawn for a new millisecond (equal with odds 2^-80).
  EXPECT_NE(a.substr(12), b.substr(12));
}

TEST(Ids, IsValidIdRejectsMalformedIds) {
  const std::string good = "req_01ARYZ6S41TSV4RRFFQ69G5FAV";
  EXPECT_TRUE(IsValidId(good, "req"));
  EXPECT_FALSE(IsValidId(good, "key"));
  EXPECT_FALSE(IsValidId(good, "re"));
  EXPECT_FALSE(IsValidId("reqx_01ARYZ6S41TSV4RRFFQ69G5FAV", "req"));
  EXPECT_FALSE(IsValidId("req-01ARYZ6S41TSV4RRFFQ69G5FAV", "req"));
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FA", "req"));    // 25 chars
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FAVV", "req"));  // 27 chars
  EXPECT_FALSE(IsValidId("req_01aryz6s41tsv4rrffq69g5fav", "req"));   // not canonical case
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FAI", "req"));   // I is not Crockford
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FAL", "req"));
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FAO", "req"));
  EXPECT_FALSE(IsValidId("req_01ARYZ6S41TSV4RRFFQ69G5FAU", "req"));
  EXPECT_FALSE(IsValidId("req_81ARYZ6S41TSV4RRFFQ69G5FAV", "req"));  // above 2^128
  EXPECT_TRUE(IsValidId("req_7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "req"));
  EXPECT_FALSE(IsValidId("", "req"));
}

TEST(Ids, IdTimestampMsOfMalformedIdIsMinusOne) {
  EXPECT_EQ(IdTimestampMs("req_nope"), -1);
  EXPECT_EQ(IdTimestampMs(""), -1);
  EXPECT_EQ(IdTimestampMs("req_81ARYZ6S41TSV4RRFFQ69G5FAV"), -1);
  EXPECT_EQ(IdTimestampMs("01ARYZ6S41TSV4RRFFQ69G5FAV"), 1469918176385);
  EXPECT_EQ(IdTimestampMs("a_b_01ARYZ6S41TSV4RRFFQ69G5FAV"), 1469918176385);
}

TEST(IdsDeathTest, PrefixMustBeLowercaseAlphanumeric) {
  EXPECT_DEATH(NewId(""), "YZ_CHECK failed: ValidPrefix");
  EXPECT_DEATH(NewId("Req"), "YZ_CHECK failed: ValidPrefix");
  EXPECT_DEATH(NewId("a_b"), "YZ_CHECK failed: ValidPrefix");
}

}  // namespace
}  // namespace yunzhi
