// Keep-alive durations ("5m", "300", "-1"), as Ollama's keep_alive takes them.
#include <cmath>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "yunzhi/hub/registry.h"

namespace yunzhi::hub {
namespace {

Error BadDuration(std::string_view text) {
  return InvalidArgumentError(
      fmt::format("invalid keep_alive '{}': expected a duration such as \"5m\", \"30s\", "
                  "\"1h30m\", a number of seconds, or -1 for never unloading",
                  text.substr(0, 100)),
      "keep_alive");
}

// Reads a non-negative decimal number ("12", "1.5") from the front of `s`.
bool TakeNumber(std::string_view& s, double* out) {
  size_t i = 0;
  bool digits = false, dot = false;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !dot))) {
    digits |= s[i] != '.';
    dot |= s[i] == '.';
    ++i;
  }
  if (!digits) return false;
  *out = std::stod(std::string(s.substr(0, i)));
  s.remove_prefix(i);
  return true;
}

}  // namespace

Result<int64_t> ParseKeepAliveMs(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return BadDuration(text);
  double total_ms = 0;
  double value = 0;
  if (!TakeNumber(s, &value)) return BadDuration(text);
  if (s.empty()) {
    total_ms = value * 1000.0;  // a bare number: seconds
  } else {
    for (;;) {
      // Longest unit names first: "ms" before "m".
      static constexpr std::pair<std::string_view, double> kUnits[] = {
          {"ns", 1e-6}, {"us", 1e-3}, {"\u00b5s", 1e-3}, {"ms", 1.0},
          {"s", 1e3},   {"m", 60e3},  {"h", 3600e3}};
      double unit_ms = 0;
      for (const auto& [name, ms] : kUnits) {
        if (s.starts_with(name)) {
          unit_ms = ms;
          s.remove_prefix(name.size());
          break;
        }
      }
      if (unit_ms == 0) return BadDuration(text);
      total_ms += value * unit_ms;
      if (s.empty()) break;
      if (!TakeNumber(s, &value)) return BadDuration(text);
    }
  }
  if (negative && total_ms > 0) return int64_t{-1};
  // Beyond ~292 million years: a typo, not a wish.
  if (!std::isfinite(total_ms) || total_ms > 9.2e18) return BadDuration(text);
  return static_cast<int64_t>(std::llround(total_ms));
}

}  // namespace yunzhi::hub
