// Structured logging: an event name plus key=value fields, as text or one JSON object per line.
//
//   log::Info("request", {{"method", "GET"}, {"status", 200}, {"duration_ms", 1.5}});
//   -> 2026-11-25T01:02:03.123Z INFO request request_id=req_01J... method=GET status=200 ...
//
// Every line written while a ScopedRequestId is alive on the thread carries that request id, so
// the logs of one request can be found together. Thread safety: all functions are thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"

namespace yunzhi::log {

enum class Level { kDebug = 0, kInfo, kWarn, kError, kOff };

// Parses "debug" | "info" | "warn" | "error" | "off" (case-insensitive).
Result<Level> ParseLevel(std::string_view text);

struct Options {
  Level level = Level::kInfo;
  bool json = false;      // false: human-readable text; true: one JSON object per line
  std::string file;       // empty: standard error; else append to this file (parent dirs created)
  // Source of the timestamps. Null: Clock::System(). Not owned; must outlive its use by the
  // logger (until the next Init). Tests pass a FakeClock to get exact lines.
  const Clock* clock = nullptr;
};

// Configures the process-wide logger. May be called again to reconfigure (e.g. after the config
// file has been read); lines written concurrently go to either the old or the new destination.
// Before the first Init, lines at kInfo and above go to standard error as text.
// Every line is flushed when written. On error the previous configuration stays in effect.
// Errors: kUnavailable when `file` cannot be opened.
Status Init(const Options& options);

struct Field {
  std::string_view key;
  std::string value;
  bool quoted;  // JSON: emit as a string (true) or a bare number/bool (false)

  Field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : ""), quoted(true) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  template <typename T>
    requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
  Field(std::string_view k, T v) : key(k), value(ToString(v)), quoted(false) {}

 private:
  static std::string ToString(double v);
  template <typename T>
  static std::string ToString(T v) {
    if constexpr (std::is_floating_point_v<T>) {
      return ToString(static_cast<double>(v));
    } else {
      return std::to_string(v);
    }
  }
};

// Whether a line at `level` would be written (one relaxed atomic load). False for kOff.
bool Enabled(Level level);
// Writes one line; does nothing when !Enabled(level). Text format:
//   <ts> <LEVEL> <event> [request_id=<id>] key=value key2="value with spaces"
// where a value is quoted when it is empty or contains a space, '"', '=', '\\' or a control
// character; inside quotes '"' and '\\' are backslash-escaped and control characters are written
// as \n, \r, \t or \u00XX. JSON format, one object per line:
//   {"ts":"...","level":"info","event":"...","request_id":"...","key":"value","n":3}
// ("request_id" only when set; strings are JSON-escaped and invalid UTF-8 becomes U+FFFD;
// numbers and booleans are bare, except non-finite numbers, which are strings). Field keys are
// written as given: callers must not reuse ts, level, event or request_id.
void Write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void Debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, event, fields);
}
inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kError)) Write(Level::kError, event, fields);
}

// Tags every log line written on this thread, while alive, with request_id=<id>. Nests.
class ScopedRequestId {
 public:
  explicit ScopedRequestId(std::string id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string previous_;
};

// The request id of the current thread ("" when none).
const std::string& CurrentRequestId();

}  // namespace yunzhi::log
