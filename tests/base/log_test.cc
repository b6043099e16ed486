#include "yunzhi/base/log.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/crypto.h"

namespace yunzhi::log {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kTs = 1795568523123;  // 2026-11-25T01:02:03.123Z

// Each test logs into its own temporary file with a fixed clock, and puts the process logger
// back on standard error afterwards.
class LogTest : public ::testing::Test {
 protected:
  LogTest() : clock_(kTs) {
    dir_ = fs::temp_directory_path() / ("yunzhi_log_test_" + crypto::RandomAlnum(12));
    fs::create_directories(dir_);
    path_ = (dir_ / "test.log").string();
  }
  ~LogTest() override {
    EXPECT_TRUE(Init({}).has_value());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void InitLog(bool json, Level level = Level::kDebug) {
    Options o;
    o.level = level;
    o.json = json;
    o.file = path_;
    o.clock = &clock_;
    ASSERT_TRUE(Init(o).has_value());
  }

  static std::vector<std::string> ReadLines(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  std::vector<std::string> Lines() const { return ReadLines(path_); }

  FakeClock clock_;
  fs::path dir_;
  std::string path_;
};

TEST_F(LogTest, TextLineHasTimestampLevelEventAndFields) {
  InitLog(/*json=*/false);
  Info("request", {{"method", "GET"}, {"status", 200}, {"duration_ms", 1.5}, {"ok", true}});
  EXPECT_THAT(Lines(),
              ::testing::ElementsAre("2026-11-25T01:02:03.123Z INFO request method=GET status=200 "
                                     "duration_ms=1.5 ok=true"));
}

TEST_F(LogTest, TextLevelNames) {
  InitLog(/*json=*/false);
  Debug("a");
  Info("b");
  Warn("c");
  Error("d");
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "2026-11-25T01:02:03.123Z DEBUG a");
  EXPECT_EQ(lines[1], "2026-11-25T01:02:03.123Z INFO b");
  EXPECT_EQ(lines[2], "2026-11-25T01:02:03.123Z WARN c");
  EXPECT_EQ(lines[3], "2026-11-25T01:02:03.123Z ERROR d");
}

TEST_F(LogTest, TextQuotesAndEscapesValuesThatNeedIt) {
  InitLog(/*json=*/false);
  Info("e", {{"plain", "abc"},
             {"space", "value with spaces"},
             {"quote", "say \"hi\""},
             {"eq", "a=b"},
             {"empty", ""},
             {"backslash", "C:\\dir"},
             {"newline", "line1\nline2\ttab\x01"},
             {"utf8", "通义千问"}});
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << "a newline in a value must not split the line";
  EXPECT_EQ(lines[0],
            "2026-11-25T01:02:03.123Z INFO e plain=abc space=\"value with spaces\" "
            "quote=\"say \\\"hi\\\"\" eq=\"a=b\" empty=\"\" backslash=\"C:\\\\dir\" "
            "newline=\"line1\\nline2\\ttab\\u0001\" utf8=通义千问");
}

TEST_F(LogTest, JsonLineHasFixedKeysThenFields) {
  InitLog(/*json=*/true);
  Warn("slow_request", {{"path", "/v1/chat"}, {"status", 200}, {"ms", 2.25}, {"stream", false}});
  EXPECT_THAT(Lines(), ::testing::ElementsAre(
                           R"({"ts":"2026-11-25T01:02:03.123Z","level":"warn",)"
                           R"("event":"slow_request","path":"/v1/chat","status":200,"ms":2.25,)"
                           R"("stream":false})"));
}

TEST_F(LogTest, JsonEscapesStringsAndStaysValid) {
  InitLog(/*json=*/true);
  const std::string nasty = std::string("q\"b\\n\nr\rt\t") + '\x01' + '\x1f' + "\x7f" + "通义";
  const std::string invalid_utf8 =
      "a\xff"
      "b\xc3"
      "c\xed\xa0\x80"
      "d";  // bad byte, cut, surrogate
  Info("esc\"ape", {{"nasty", nasty},
                    {"bad", invalid_utf8},
                    {"k\"ey", "v"},
                    {"nan", std::numeric_limits<double>::quiet_NaN()},
                    {"inf", -std::numeric_limits<double>::infinity()},
                    {"neg", -42},
                    {"num_text", "123"}});
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(R"("nasty":"q\"b\\n\nr\rt\t\u0001\u001f)"));
  EXPECT_THAT(lines[0], HasSubstr(R"("bad":"a\ufffdb\ufffdc\ufffd\ufffd\ufffdd")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("num_text":"123")")) << "strings stay strings";
  EXPECT_THAT(lines[0], HasSubstr(R"("neg":-42)"));

  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(lines[0], ec);
  ASSERT_FALSE(ec) << ec.message() << "\n" << lines[0];
  const auto& o = v.as_object();
  EXPECT_EQ(o.at("event").as_string(), "esc\"ape");
  EXPECT_EQ(o.at("nasty").as_string(), nasty);
  EXPECT_EQ(o.at("bad").as_string(),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c\xEF\xBF\xBD\xEF\xBF\xBD"
            "\xEF\xBF\xBD"
            "d");
  EXPECT_EQ(o.at("k\"ey").as_string(), "v");
  EXPECT_TRUE(o.at("nan").is_string());
  EXPECT_EQ(o.at("inf").as_string(), "-inf");
  EXPECT_EQ(o.at("neg").as_int64(), -42);
  EXPECT_FALSE(o.contains("request_id"));
}

TEST_F(LogTest, LevelFilterDropsLowerLevels) {
  InitLog(/*json=*/false, Level::kWarn);
  EXPECT_FALSE(Enabled(Level::kDebug));
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kWarn));
  EXPECT_TRUE(Enabled(Level::kError));
  EXPECT_FALSE(Enabled(Level::kOff));
  Debug("dropped_debug");
  Info("dropped_info");
  Write(Level::kInfo, "dropped_write", {});
  Warn("kept_warn");
  Error("kept_error");
  Write(Level::kOff, "never", {});
  const auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("kept_warn"));
  EXPECT_THAT(lines[1], HasSubstr("kept_error"));
}

TEST_F(LogTest, LevelOffWritesNothing) {
  InitLog(/*json=*/false, Level::kOff);
  Error("x");
  EXPECT_TRUE(Lines().empty());
}

TEST(LogParseLevel, AcceptsNamesCaseInsensitively) {
  EXPECT_EQ(ParseLevel("debug").value(), Level::kDebug);
  EXPECT_EQ(ParseLevel("INFO").value(), Level::kInfo);
  EXPECT_EQ(ParseLevel("Warn").value(), Level::kWarn);
  EXPECT_EQ(ParseLevel("error").value(), Level::kError);
  EXPECT_EQ(ParseLevel("off").value(), Level::kOff);
  const auto bad = ParseLevel("verbose");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message, HasSubstr("verbose"));
}

TEST_F(LogTest, RequestIdTagsLinesWhileInScopeAndNests) {
  InitLog(/*json=*/false);
  EXPECT_EQ(CurrentRequestId(), "");
  Info("before");
  {
    ScopedRequestId outer("req_outer");
    Info("in_outer");
    {
      ScopedRequestId inner("req_inner");
      EXPECT_EQ(CurrentRequestId(), "req_inner");
      Info("in_inner", {{"k", 1}});
    }
    EXPECT_EQ(CurrentRequestId(), "req_outer");
    Info("back_in_outer");
  }
  Info("after");
  EXPECT_EQ(CurrentRequestId(), "");
  EXPECT_THAT(Lines(), ::testing::ElementsAre(
                           "2026-11-25T01:02:03.123Z INFO before",
                           "2026-11-25T01:02:03.123Z INFO in_outer request_id=req_outer",
                           "2026-11-25T01:02:03.123Z INFO in_inner request_id=req_inner k=1",
                           "2026-11-25T01:02:03.123Z INFO back_in_outer request_id=req_outer",
                           "2026-11-25T01:02:03.123Z INFO after"));
}

TEST_F(LogTest, RequestIdInJson) {
  InitLog(/*json=*/true);
  ScopedRequestId id("req_01J");
  Info("x", {{"a", "b"}});
  EXPECT_THAT(Lines(), ::testing::ElementsAre(R"({"ts":"2026-11-25T01:02:03.123Z","level":"info",)"
                                              R"("event":"x","request_id":"req_01J","a":"b"})"));
}

TEST_F(LogTest, RequestIdIsPerThreadAndLinesDoNotInterleave) {
  InitLog(/*json=*/true);
  constexpr int kThreads = 8;
  constexpr int kLinesPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      ScopedRequestId id("req_" + std::to_string(t));
      for (int i = 0; i < kLinesPerThread; ++i) {
        Info("work", {{"thread", t}, {"i", i}, {"padding", std::string(100, 'x')}});
      }
    });
  }
  {
    // The main thread has no request id; its lines must not pick up another thread's.
    for (int i = 0; i < 50; ++i) Info("main", {{"thread", -1}});
  }
  for (auto& th : threads) th.join();

  const auto lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLinesPerThread + 50));
  std::vector<int> count(kThreads, 0);
  for (const auto& line : lines) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
    const auto& o = v.as_object();
    const int64_t t = o.at("thread").as_int64();
    if (t < 0) {
      EXPECT_FALSE(o.contains("request_id")) << line;
      continue;
    }
    EXPECT_EQ(o.at("request_id").as_string(), "req_" + std::to_string(t)) << line;
    ++count[t];
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(count[t], kLinesPerThread) << "thread " << t;
}

TEST_F(LogTest, InitReconfiguresDestinationAndFormat) {
  InitLog(/*json=*/false);
  Info("first");
  const std::string second = (dir_ / "nested" / "dir" / "second.log").string();  // dirs created
  Options o;
  o.json = true;
  o.file = second;
  o.clock = &clock_;
  ASSERT_TRUE(Init(o).has_value());
  Info("second");
  EXPECT_THAT(Lines(), ::testing::ElementsAre("2026-11-25T01:02:03.123Z INFO first"));
  EXPECT_THAT(ReadLines(second),
              ::testing::ElementsAre(
                  R"({"ts":"2026-11-25T01:02:03.123Z","level":"info","event":"second"})"));
}

TEST_F(LogTest, AppendsToExistingFileAndUsesTheClock) {
  {
    std::ofstream out(path_);
    out << "existing line\n";
  }
  InitLog(/*json=*/false);
  clock_.Advance(std::chrono::milliseconds(1877));
  Info("later");
  EXPECT_THAT(Lines(),
              ::testing::ElementsAre("existing line", "2026-11-25T01:02:05.000Z INFO later"));
}

TEST_F(LogTest, InitFailureKeepsPreviousConfiguration) {
  InitLog(/*json=*/false);
  // A regular file cannot be a directory, so this path cannot be created.
  const std::string impossible = path_ + "/sub/x.log";
  Options bad;
  bad.file = impossible;
  const Status s = Init(bad);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_THAT(s.error().message, HasSubstr(impossible));
  Info("still_here");
  EXPECT_THAT(Lines(), ::testing::ElementsAre("2026-11-25T01:02:03.123Z INFO still_here"));
}

TEST(LogField, FormatsNumbers) {
  EXPECT_EQ(Field("k", 3).value, "3");
  EXPECT_EQ(Field("k", int64_t{-9000000000}).value, "-9000000000");
  EXPECT_EQ(Field("k", uint64_t{18446744073709551615u}).value, "18446744073709551615");
  EXPECT_EQ(Field("k", 0.1).value, "0.1");
  EXPECT_EQ(Field("k", 2.5f).value, "2.5");
  EXPECT_EQ(Field("k", true).value, "true");
  EXPECT_FALSE(Field("k", 1).quoted);
  EXPECT_TRUE(Field("k", "1").quoted);
  EXPECT_EQ(Field("k", static_cast<const char*>(nullptr)).value, "");
}

}  // namespace
}  // namespace yunzhi::log
