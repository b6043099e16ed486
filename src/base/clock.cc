#include "yunzhi/base/clock.h"

#include <chrono>

#include <fmt/format.h>

#include "yunzhi/base/status.h"

namespace yunzhi {
namespace {

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::chrono::steady_clock::time_point SteadyNow() const override {
    return std::chrono::steady_clock::now();
  }
};

// Far enough from the steady epoch that code using time_point{} as "never" is not confused.
constexpr int64_t kFakeSteadyStartNs = int64_t{1000} * 3600 * 1000 * 1000 * 1000;  // 1000 h

}  // namespace

Clock::~Clock() = default;

Clock* Clock::System() {
  // Leaked on purpose: usable from static destructors and other threads during exit.
  static Clock* const clock = new SystemClock();
  return clock;
}

FakeClock::FakeClock(int64_t unix_ms) : unix_ms_(unix_ms), steady_ns_(kFakeSteadyStartNs) {}

int64_t FakeClock::NowUnixMs() const { return unix_ms_.load(std::memory_order_acquire); }

std::chrono::steady_clock::time_point FakeClock::SteadyNow() const {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::nanoseconds(steady_ns_.load(std::memory_order_acquire))));
}

void FakeClock::SetUnixMs(int64_t unix_ms) { unix_ms_.store(unix_ms, std::memory_order_release); }

void FakeClock::Advance(std::chrono::milliseconds d) {
  YZ_CHECK(d.count() >= 0);
  steady_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(),
                       std::memory_order_acq_rel);
  unix_ms_.fetch_add(d.count(), std::memory_order_acq_rel);
}

std::string FormatRfc3339Ms(int64_t unix_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds(unix_ms)};
  const sys_days day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> tod{tp - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     tod.hours().count(), tod.minutes().count(), tod.seconds().count(),
                     tod.subseconds().count());
}

}  // namespace yunzhi
