#include "yunzhi/base/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::metrics {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, CounterAndGaugeRenderWithHelpTypeAndLabels) {
  Registry registry;
  auto* requests = registry.AddCounter("app_requests_total", "Requests served.", {"route", "code"});
  requests->WithLabels({"/v1/models", "200"}).Increment();
  requests->WithLabels({"/v1/models", "200"}).Increment(2);
  auto* temperature = registry.AddGauge("app_temperature_celsius", "Temperature.");
  temperature->WithLabels({}).Set(21.5);
  temperature->WithLabels({}).Add(-1);

  EXPECT_EQ(registry.RenderPrometheus(),
            "# HELP app_requests_total Requests served.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{route=\"/v1/models\",code=\"200\"} 3\n"
            "# HELP app_temperature_celsius Temperature.\n"
            "# TYPE app_temperature_celsius gauge\n"
            "app_temperature_celsius 20.5\n");
}

TEST(Metrics, FamiliesRenderInNameOrderAcrossKinds) {
  Registry registry;
  registry.AddGauge("b_gauge", "b");
  registry.AddHistogram("c_hist", "c", {}, {1});
  registry.AddCounter("a_total", "a");
  const std::string text = registry.RenderPrometheus();
  const size_t a = text.find("# HELP a_total");
  const size_t b = text.find("# HELP b_gauge");
  const size_t c = text.find("# HELP c_hist");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(c, std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

TEST(Metrics, UnlabelledFamilyIsExportedAsZeroBeforeFirstUpdate) {
  Registry registry;
  registry.AddCounter("idle_total", "Never incremented.");
  EXPECT_THAT(registry.RenderPrometheus(), HasSubstr("\nidle_total 0\n"));
}

TEST(Metrics, LabelledFamilyWithoutMetricsRendersOnlyItsHeader) {
  Registry registry;
  registry.AddCounter("x_total", "X.", {"a"});
  EXPECT_EQ(registry.RenderPrometheus(), "# HELP x_total X.\n# TYPE x_total counter\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry registry;
  auto* family = registry.AddCounter("esc_total", "Line one\nback\\slash \"quoted\"", {"v"});
  family->WithLabels({"a\\b\"c\nd"}).Increment();
  EXPECT_EQ(registry.RenderPrometheus(),
            "# HELP esc_total Line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE esc_total counter\n"
            "esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry registry;
  auto* family = registry.AddHistogram("lat_seconds", "Latency.", {"route"}, {0.1, 1, 0.5});
  Histogram& h = family->WithLabels({"/x"});
  h.Observe(0.05);
  h.Observe(0.1);  // on the bound: counts in le="0.1"
  h.Observe(0.7);
  h.Observe(3);
  h.Observe(std::nan(""));  // ignored
  EXPECT_EQ(registry.RenderPrometheus(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
            "lat_seconds_bucket{route=\"/x\",le=\"0.5\"} 2\n"
            "lat_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
            "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{route=\"/x\"} 3.85\n"
            "lat_seconds_count{route=\"/x\"} 4\n");
}

TEST(Metrics, UnlabelledHistogramHasOnlyLeLabel) {
  Registry registry;
  auto* family = registry.AddHistogram("h", "H.", {}, {1});
  family->WithLabels({}).Observe(2);
  EXPECT_EQ(registry.RenderPrometheus(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n");
}

TEST(Metrics, HistogramSnapshotEndsWithInfinity) {
  Histogram h({2, 1, 1, std::numeric_limits<double>::infinity()});
  h.Observe(1.5);
  const Histogram::Snapshot s = h.snapshot();
  ASSERT_EQ(s.upper_bounds.size(), 3u);
  EXPECT_EQ(s.upper_bounds[0], 1);
  EXPECT_EQ(s.upper_bounds[1], 2);
  EXPECT_TRUE(std::isinf(s.upper_bounds[2]));
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{0, 1, 1}));
  EXPECT_EQ(s.count, 1u);
  EXPECT_DOUBLE_EQ(s.sum, 1.5);
}

TEST(Metrics, DefaultLatencyBucketsAreSortedFromMillisecondToMinute) {
  const std::vector<double> b = DefaultLatencyBuckets();
  ASSERT_FALSE(b.empty());
  EXPECT_DOUBLE_EQ(b.front(), 0.001);
  EXPECT_DOUBLE_EQ(b.back(), 60);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

TEST(Metrics, RegisteringTheSameNameReturnsTheFirstFamily) {
  Registry registry;
  auto* first = registry.AddCounter("dup_total", "First.", {"a"});
  auto* second = registry.AddCounter("dup_total", "Second.", {"b", "c"});
  EXPECT_EQ(first, second);
  EXPECT_THAT(registry.RenderPrometheus(), HasSubstr("# HELP dup_total First.\n"));
}

TEST(Metrics, SpecialValuesUseGoSpellings) {
  Registry registry;
  auto* g = registry.AddGauge("g", "G.", {"k"});
  g->WithLabels({"inf"}).Set(std::numeric_limits<double>::infinity());
  g->WithLabels({"nan"}).Set(std::nan(""));
  g->WithLabels({"neg"}).Set(-std::numeric_limits<double>::infinity());
  g->WithLabels({"small"}).Set(1e-7);
  const std::string text = registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("g{k=\"inf\"} +Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{k=\"nan\"} NaN\n"));
  EXPECT_THAT(text, HasSubstr("g{k=\"neg\"} -Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{k=\"small\"} 1e-07\n"));
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  Registry registry;
  auto* counter = registry.AddCounter("c_total", "C.", {"t"});
  auto* hist = registry.AddHistogram("h_seconds", "H.", {}, {0.5});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        counter->WithLabels({"same"}).Increment();
        hist->WithLabels({}).Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrape while writers run: must not crash or deadlock.
  for (int i = 0; i < 50; ++i) (void)registry.RenderPrometheus();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter->WithLabels({"same"}).value(), kThreads * kPerThread);
  const Histogram::Snapshot s = hist->WithLabels({}).snapshot();
  EXPECT_EQ(s.count, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(s.cumulative_counts[0], uint64_t{kThreads * kPerThread / 2});
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kPerThread / 2 * 1.25);
}

TEST(MetricsDeathTest, WrongNumberOfLabelValuesAborts) {
  Registry registry;
  auto* family = registry.AddCounter("d_total", "D.", {"a", "b"});
  EXPECT_DEATH(family->WithLabels({"only-one"}), "YZ_CHECK");
}

TEST(MetricsDeathTest, OneNameCannotBeTwoKinds) {
  Registry registry;
  registry.AddCounter("k", "K.");
  EXPECT_DEATH(registry.AddGauge("k", "K."), "YZ_CHECK");
}

TEST(MetricsDeathTest, InvalidNamesAbort) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("1bad", "B."), "YZ_CHECK");
  EXPECT_DEATH(registry.AddCounter("ok_total", "B.", {"le"}), "YZ_CHECK");
  EXPECT_DEATH(registry.AddCounter("ok2_total", "B.", {"has:colon"}), "YZ_CHECK");
}

}  // namespace
}  // namespace yunzhi::metrics
