#include "yunzhi/engine/stop.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace yunzhi::engine {
namespace {

StopMatcher MustCreate(std::vector<std::string> stops) {
  Result<StopMatcher> m = StopMatcher::Create(std::move(stops));
  EXPECT_TRUE(m.has_value()) << m.error().ToString();
  return std::move(*m);
}

// Feeds the pieces; returns everything emitted (plus the flush if no stop) and the stop index.
struct FeedResult {
  std::string text;
  int stop_index = -1;
  std::vector<std::string> emitted;  // per Push
};
FeedResult Feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  FeedResult run;
  for (const std::string& p : pieces) {
    StopMatcher::Output out = m.Push(p);
    run.text += out.text;
    run.emitted.push_back(out.text);
    if (out.stopped) {
      run.stop_index = out.stop_index;
      return run;
    }
  }
  run.text += m.Flush();
  return run;
}

TEST(StopMatcher, PassesTextThroughWithoutStops) {
  StopMatcher m = MustCreate({});
  FeedResult r = Feed(m, {"Hello", ", ", "world"});
  EXPECT_EQ(r.text, "Hello, world");
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hello", ", ", "world"}));
}

TEST(StopMatcher, StopInsideOnePieceEmitsTheTextBefore) {
  StopMatcher m = MustCreate({"END"});
  FeedResult r = Feed(m, {"abc", "xyENDzz", "more"});
  EXPECT_EQ(r.text, "abcxy");
  EXPECT_EQ(r.stop_index, 0);
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("again").text, "");
}

TEST(StopMatcher, StopSplitOverThreePiecesIsHeldBackThenDropped) {
  StopMatcher m = MustCreate({"<|stop|>"});
  FeedResult r = Feed(m, {"Hi <|", "st", "op|> tail"});
  EXPECT_EQ(r.text, "Hi ");
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hi ", "", ""}));
  EXPECT_EQ(r.stop_index, 0);
}

TEST(StopMatcher, HeldBackPrefixIsReleasedWhenItDoesNotComplete) {
  StopMatcher m = MustCreate({"<|stop|>"});
  FeedResult r = Feed(m, {"a <|", "st", "ep"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"a ", "", "<|step"}));
  EXPECT_EQ(r.text, "a <|step");
  EXPECT_EQ(r.stop_index, -1);
}

TEST(StopMatcher, FlushReleasesAPendingPrefixAtTheEnd) {
  StopMatcher m = MustCreate({"\n\nUser:"});
  StopMatcher::Output out = m.Push("answer\n\nUs");
  EXPECT_EQ(out.text, "answer");
  EXPECT_EQ(m.n_held_bytes(), 4u);
  EXPECT_EQ(m.Flush(), "\n\nUs");
}

TEST(StopMatcher, OverlappingPrefixesAbAndAab) {
  {
    StopMatcher m = MustCreate({"ab", "aab"});
    FeedResult r = Feed(m, {"x", "a", "a", "b"});
    EXPECT_EQ(r.text, "x");  // "aab" starts first
    EXPECT_EQ(r.stop_index, 1);
  }
  {
    StopMatcher m = MustCreate({"aab"});
    // "aaab": the first 'a' cannot start "aab" once a third 'a' arrives.
    FeedResult r = Feed(m, {"a", "a", "a", "b"});
    EXPECT_EQ(r.emitted, (std::vector<std::string>{"", "", "a", ""}));
    EXPECT_EQ(r.text, "a");
    EXPECT_EQ(r.stop_index, 0);
  }
  {
    StopMatcher m = MustCreate({"ab", "aab"});
    FeedResult r = Feed(m, {"a", "c", "ab"});
    EXPECT_EQ(r.text, "ac");
    EXPECT_EQ(r.stop_index, 0);
  }
}

TEST(StopMatcher, SameStartPrefersTheLongerStop) {
  StopMatcher m = MustCreate({"ab", "abc"});
  FeedResult r = Feed(m, {"xabcd"});
  EXPECT_EQ(r.text, "x");
  EXPECT_EQ(r.stop_index, 1);
}

TEST(StopMatcher, Utf8StopStringsAndCharactersSplitAcrossPieces) {
  StopMatcher m = MustCreate({"再见"});  // E5 86 8D E8 A7 81
  // "你好" then "再见" split in the middle of its first character.
  FeedResult r = Feed(m, {"你好", "\xE5\x86", "\x8D\xE8", "\xA7\x81!"});
  EXPECT_EQ(r.text, "你好");
  EXPECT_EQ(r.stop_index, 0);
}

TEST(StopMatcher, IncompleteUtf8IsHeldBackEvenWithoutStops) {
  StopMatcher m = MustCreate({});
  EXPECT_EQ(m.Push("a\xE4\xB8").text, "a");  // 中 = E4 B8 AD
  EXPECT_EQ(m.n_held_bytes(), 2u);
  EXPECT_EQ(m.Push("\xAD").text, "中");
  // A character that shares lead bytes with a stop string but differs is released whole.
  StopMatcher s = MustCreate({"中国"});
  EXPECT_EQ(s.Push("中").text, "");
  EXPECT_EQ(s.Push("文").text, "中文");
}

TEST(StopMatcher, ResetStartsOver) {
  StopMatcher m = MustCreate({"x"});
  EXPECT_TRUE(m.Push("axb").stopped);
  m.Reset();
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("bc").text, "bc");
}

TEST(StopMatcher, RejectsTooManyOrEmptyStops) {
  Result<StopMatcher> too_many = StopMatcher::Create({"a", "b", "c", "d", "e"});
  ASSERT_FALSE(too_many.has_value());
  EXPECT_EQ(too_many.error().code, Code::kInvalidArgument);
  EXPECT_EQ(too_many.error().param, "stop");
  EXPECT_FALSE(StopMatcher::Create({""}).has_value());
  EXPECT_TRUE(StopMatcher::Create({"a", "b", "c", "d"}).has_value());
}

}  // namespace
}  // namespace yunzhi::engine
