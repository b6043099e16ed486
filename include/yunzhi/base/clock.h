// Time as an injected dependency.
//
// Code that reads the time takes a `const Clock&` (defaulting to Clock::System()), so tests pass
// a FakeClock and move time forward explicitly instead of sleeping. Two kinds of time:
//   - wall time (NowUnixMs): what to store and show (created_at, log timestamps, id prefixes);
//     it can jump when the system clock is set;
//   - steady time (SteadyNow): what to measure durations and deadlines with; never goes back.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace yunzhi {

// Thread safety: implementations must be safe to call from any thread.
class Clock {
 public:
  virtual ~Clock();

  // Milliseconds since 1970-01-01T00:00:00Z (wall clock).
  virtual int64_t NowUnixMs() const = 0;
  // A monotonic time point, for durations and timeouts only.
  virtual std::chrono::steady_clock::time_point SteadyNow() const = 0;

  // The process-wide real clock (system_clock / steady_clock). Never null, never freed.
  static Clock* System();
};

// A clock that moves only when told to. Starts at `unix_ms` (wall) and at a fixed, arbitrary
// steady time point. Thread-safe: readers may run concurrently with SetUnixMs/Advance.
class FakeClock : public Clock {
 public:
  // 2026-01-01T00:00:00Z: a recognisable default that is neither zero nor "now".
  static constexpr int64_t kDefaultStartUnixMs = 1767225600000;

  explicit FakeClock(int64_t unix_ms = kDefaultStartUnixMs);

  int64_t NowUnixMs() const override;
  std::chrono::steady_clock::time_point SteadyNow() const override;

  // Sets the wall clock only, like an administrator setting the system time: steady time does
  // not move. May go backwards.
  void SetUnixMs(int64_t unix_ms);
  // Moves both the wall clock and steady time forward by `d`. Precondition: d >= 0.
  void Advance(std::chrono::milliseconds d);

 private:
  std::atomic<int64_t> unix_ms_;
  std::atomic<int64_t> steady_ns_;  // nanoseconds since the steady_clock epoch
};

// Formats wall time as RFC 3339 in UTC with milliseconds: "2026-11-25T01:02:03.123Z".
// Valid for years 0000..9999; times before 1970 (negative values) are handled.
std::string FormatRfc3339Ms(int64_t unix_ms);

}  // namespace yunzhi
