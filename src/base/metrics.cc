#include "yunzhi/base/metrics.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <string_view>
#include <type_traits>

#include <fmt/format.h>

#include "yunzhi/base/status.h"

namespace yunzhi::metrics {
namespace {

bool IsNameChar(char c, bool first, bool allow_colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (allow_colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool IsValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], i == 0, allow_colon)) return false;
  }
  return true;
}

// Prometheus sample values and `le` bounds: Go's ParseFloat syntax, with its spellings of the
// non-finite values. fmt's shortest round-trip form ("1", "0.005", "1e-07") parses there.
void AppendNumber(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

// Label values escape backslash, double quote and newline; HELP text escapes only backslash and
// newline (text format 0.0.4).
void AppendEscaped(std::string& out, std::string_view text, bool escape_quote) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += escape_quote ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

// `{a="x",b="y"}` plus an optional trailing `le`; nothing when there are no labels at all.
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    AppendEscaped(out, values[i], /*escape_quote=*/true);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void AppendHeader(std::string& out, const std::string& name, const std::string& help,
                  std::string_view type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  AppendEscaped(out, help, /*escape_quote=*/false);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void CheckLabelNames(const std::vector<std::string>& label_names) {
  for (const std::string& label : label_names) {
    YZ_CHECK(IsValidName(label, /*allow_colon=*/false));
    YZ_CHECK(label != "le");  // reserved for histogram buckets
  }
}

}  // namespace

// --- Counter, Gauge, Histogram ---------------------------------------------------------------

void Counter::Increment(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
double Counter::value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double v) { value_.store(v, std::memory_order_relaxed); }
void Gauge::Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
double Gauge::value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // First bound >= v: buckets are "less than or equal"; past the end is the +Inf bucket.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  s.upper_bounds.push_back(std::numeric_limits<double>::infinity());
  s.cumulative_counts.reserve(s.upper_bounds.size());
  uint64_t running = 0;
  for (size_t i = 0; i < s.upper_bounds.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative_counts.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// --- Family -----------------------------------------------------------------------------------

template <typename M>
M& Family<M>::WithLabels(const std::vector<std::string>& values) {
  YZ_CHECK(values.size() == label_names_.size());
  std::lock_guard lock(mutex_);
  auto it = metrics_.find(values);
  if (it == metrics_.end()) {
    std::unique_ptr<M> metric;
    if constexpr (std::is_same_v<M, Histogram>) {
      metric = std::make_unique<Histogram>(buckets_);
    } else {
      metric = std::make_unique<M>();
    }
    it = metrics_.emplace(values, std::move(metric)).first;
  }
  return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry ---------------------------------------------------------------------------------

Family<Counter>* Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  YZ_CHECK(IsValidName(name, /*allow_colon=*/true));
  CheckLabelNames(label_names);
  std::lock_guard lock(mutex_);
  if (auto it = counters_.find(name); it != counters_.end()) return it->second.get();
  YZ_CHECK(!gauges_.contains(name) && !histograms_.contains(name));
  auto* family = new Family<Counter>(name, help, std::move(label_names));
  counters_.emplace(name, std::unique_ptr<Family<Counter>>(family));
  if (family->label_names_.empty()) family->WithLabels({});
  return family;
}

Family<Gauge>* Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  YZ_CHECK(IsValidName(name, /*allow_colon=*/true));
  CheckLabelNames(label_names);
  std::lock_guard lock(mutex_);
  if (auto it = gauges_.find(name); it != gauges_.end()) return it->second.get();
  YZ_CHECK(!counters_.contains(name) && !histograms_.contains(name));
  auto* family = new Family<Gauge>(name, help, std::move(label_names));
  gauges_.emplace(name, std::unique_ptr<Family<Gauge>>(family));
  if (family->label_names_.empty()) family->WithLabels({});
  return family;
}

Family<Histogram>* Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> buckets) {
  YZ_CHECK(IsValidName(name, /*allow_colon=*/true));
  CheckLabelNames(label_names);
  std::lock_guard lock(mutex_);
  if (auto it = histograms_.find(name); it != histograms_.end()) return it->second.get();
  YZ_CHECK(!counters_.contains(name) && !gauges_.contains(name));
  auto* family = new Family<Histogram>(name, help, std::move(label_names), std::move(buckets));
  histograms_.emplace(name, std::unique_ptr<Family<Histogram>>(family));
  if (family->label_names_.empty()) family->WithLabels({});
  return family;
}

std::string Registry::RenderPrometheus() const {
  // Families are never removed, so the pointers stay valid after the registry lock is released;
  // each family's own lock guards its map while it is rendered.
  enum class Kind { kCounter, kGauge, kHistogram };
  std::map<std::string_view, std::pair<Kind, const void*>> families;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, f] : counters_) families[name] = {Kind::kCounter, f.get()};
    for (const auto& [name, f] : gauges_) families[name] = {Kind::kGauge, f.get()};
    for (const auto& [name, f] : histograms_) families[name] = {Kind::kHistogram, f.get()};
  }

  std::string out;
  for (const auto& [name, entry] : families) {
    const auto [kind, ptr] = entry;
    if (kind == Kind::kCounter || kind == Kind::kGauge) {
      // Counter and Gauge expose the same `value()`; render both through one lambda.
      auto render = [&out](const auto& family, std::string_view type) {
        AppendHeader(out, family.name_, family.help_, type);
        std::lock_guard lock(family.mutex_);
        for (const auto& [values, metric] : family.metrics_) {
          out += family.name_;
          AppendLabels(out, family.label_names_, values);
          out += ' ';
          AppendNumber(out, metric->value());
          out += '\n';
        }
      };
      if (kind == Kind::kCounter) {
        render(*static_cast<const Family<Counter>*>(ptr), "counter");
      } else {
        render(*static_cast<const Family<Gauge>*>(ptr), "gauge");
      }
      continue;
    }
    const auto& family = *static_cast<const Family<Histogram>*>(ptr);
    AppendHeader(out, family.name_, family.help_, "histogram");
    std::lock_guard lock(family.mutex_);
    for (const auto& [values, metric] : family.metrics_) {
      const Histogram::Snapshot s = metric->snapshot();
      for (size_t i = 0; i < s.upper_bounds.size(); ++i) {
        std::string le;
        AppendNumber(le, s.upper_bounds[i]);
        out += family.name_;
        out += "_bucket";
        AppendLabels(out, family.label_names_, values, &le);
        out += ' ';
        out += std::to_string(s.cumulative_counts[i]);
        out += '\n';
      }
      out += family.name_;
      out += "_sum";
      AppendLabels(out, family.label_names_, values);
      out += ' ';
      AppendNumber(out, s.sum);
      out += '\n';
      out += family.name_;
      out += "_count";
      AppendLabels(out, family.label_names_, values);
      out += ' ';
      out += std::to_string(s.count);
      out += '\n';
    }
  }
  return out;
}

}  // namespace yunzhi::metrics
