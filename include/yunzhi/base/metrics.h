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

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  // Cumulative counts per bound (the last is +Inf), sum and count, consistent enough for scraping.
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // one per bound plus +Inf
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// Default latency buckets in seconds: 1 ms .. 60 s.
std::vector<double> DefaultLatencyBuckets();

template <typename M>
class Family {
 public:
  // The metric for these label values, created on first use.
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
  // first registration win).
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names = {},
                                  std::vector<double> buckets = DefaultLatencyBuckets());
  // All families in the Prometheus text format, families in name order.
  std::string RenderPrometheus() const;

 private:
  mutable std::mutex mutex_;  // guards the three maps
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, std::unique_ptr<Family<Histogram>>> histograms_;
};

}  // namespace yunzhi::metrics
