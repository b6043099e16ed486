// Process-wide metrics in the Prometheus text exposition format (version 0.0.4).
//
// Modules register families once (at start-up) and keep the returned pointers; updating a
// metric is a few atomic operations. Labels are given as values in the order of the family's
// label names; keep their cardinality bounded (route patterns, not raw paths).
//
// Thread safety: everything here is thread-safe. Families live as long as their registry.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace yunzhi::metrics {

class Counter {
 public:
  void Increment(double by = 1.0);
  double value() const;

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v);
  void Add(double by);
  double value() const;

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets `v <= bound` (Prometheus `le`).
class Histogram {
 public:
  // `upper_bounds` are sorted and deduplicated here; non-finite bounds are dropped (the +Inf
  // bucket always exists).
  explicit Histogram(std::vector<double> upper_bounds);
  // NaN observations are ignored.
  void Observe(double v);
  // Cumulative counts per bound, sum and count, consistent enough for scraping: `upper_bounds`
  // ends with +Inf, and `count` always equals the last cumulative count (the sum may lag an
  // observation that is being recorded concurrently).
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  // One per bound plus +Inf, not cumulative; the count is their sum, so that it always agrees
  // with the +Inf bucket in a scrape.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

// Default latency buckets in seconds: 1 ms .. 60 s.
std::vector<double> DefaultLatencyBuckets();

template <typename M>
class Family {
 public:
  // The metric for these label values, created on first use. The reference stays valid as long
  // as the registry. Precondition: one value per label name (checked; a mismatch aborts).
  // Cost: a mutex and a map lookup: keep the reference when the labels are fixed.
  M& WithLabels(const std::vector<std::string>& values);

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> buckets = {})
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
        buckets_(std::move(buckets)) {}
  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::vector<double> buckets_;  // histograms only
  mutable std::mutex mutex_;      // guards metrics_ (the map, not the metrics' values)
  std::map<std::vector<std::string>, std::unique_ptr<M>> metrics_;
};

class Registry {
 public:
  // Registering the same name twice returns the existing family (the help and labels of the
  // first registration win). Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
  // [a-zA-Z_][a-zA-Z0-9_]* and not "le"; one name cannot be two kinds of metric (all checked:
  // these are programmer errors and abort). A family without labels gets its single metric at
  // once, so it is exported (as 0) before its first update.
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names = {},
                                  std::vector<double> buckets = DefaultLatencyBuckets());
  // All families in the Prometheus text format, families in name order, metrics within a family
  // in label-value order. Serve it as "text/plain; version=0.0.4; charset=utf-8".
  std::string RenderPrometheus() const;

 private:
  mutable std::mutex mutex_;  // guards the three maps
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, std::unique_ptr<Family<Histogram>>> histograms_;
};

}  // namespace yunzhi::metrics
