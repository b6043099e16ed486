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

#include "yunzhi/base/status.h"

namespace yunzhi::log {

enum class Level { kDebug = 0, kInfo, kWarn, kError, kOff };

// Parses "debug" | "info" | "warn" | "error" | "off" (case-insensitive).
Result<Level> ParseLevel(std::string_view text);

struct Options {
  Level level = Level::kInfo;
  bool json = false;      // false: human-readable text; true: one JSON object per line
  std::string file;       // empty: standard error; else append to this file
};

// Configures the process-wide logger. May be called again to reconfigure (e.g. after the config
// file has been read). Errors: kUnavailable when `file` cannot be opened.
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

bool Enabled(Level level);
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
