#include "yunzhi/platform/money.h"

#include <fmt/format.h>

#include <limits>

namespace yunzhi::platform {
namespace {

// Divides rounding half away from zero. Precondition: d > 0.
__int128 DivRoundHalfUp(__int128 n, __int128 d) {
  const __int128 q = n / d;
  const __int128 r = n % d;
  if (r == 0) return q;
  if (n >= 0) return 2 * r >= d ? q + 1 : q;
  return 2 * -r >= d ? q - 1 : q;
}

}  // namespace

Result<Money> Money::Parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError(fmt::format("'{}' is not an amount of money: {}", text, why));
  };
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return bad("no digits");
  __int128 units = 0;
  size_t i = 0;
  size_t int_digits = 0;
  for (; i < s.size() && s[i] != '.'; ++i) {
    if (s[i] < '0' || s[i] > '9') return bad("expected digits and at most one '.'");
    units = units * 10 + (s[i] - '0');
    if (++int_digits > 12) return bad("too large");
  }
  int64_t frac = 0;
  int frac_digits = 0;
  if (i < s.size()) {
    ++i;  // the '.'
    if (i == s.size()) return bad("no digits after '.'");
    for (; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') return bad("expected digits after '.'");
      if (++frac_digits > 9) return bad("more than 9 decimals");
      frac = frac * 10 + (s[i] - '0');
    }
  }
  if (int_digits == 0 && frac_digits == 0) return bad("no digits");
  for (int k = frac_digits; k < 9; ++k) frac *= 10;
  __int128 nanos = units * kNanosPerUnit + frac;
  if (nanos > std::numeric_limits<int64_t>::max()) return bad("too large");
  return Money(static_cast<int64_t>(negative ? -nanos : nanos));
}

Result<Money> Money::ForQuantity(Money price, int64_t quantity, int64_t per) {
  if (per <= 0) return InvalidArgumentError("the price unit must be positive");
  const __int128 r =
      DivRoundHalfUp(static_cast<__int128>(price.nanos_) * quantity, static_cast<__int128>(per));
  if (r > std::numeric_limits<int64_t>::max() || r < std::numeric_limits<int64_t>::min()) {
    return InvalidArgumentError(
        fmt::format("{} × {} / {} does not fit in an amount of money", price.ToString(), quantity, per));
  }
  return Money(static_cast<int64_t>(r));
}

Money Money::RoundToCents() const {
  constexpr int64_t kCent = kNanosPerUnit / 100;
  return Money(static_cast<int64_t>(DivRoundHalfUp(nanos_, kCent) * kCent));
}

std::string Money::ToString() const {
  const bool negative = nanos_ < 0;
  // Through unsigned: -INT64_MIN does not fit in int64.
  const uint64_t abs = negative ? 0 - static_cast<uint64_t>(nanos_) : static_cast<uint64_t>(nanos_);
  const uint64_t units = abs / kNanosPerUnit;
  std::string frac = fmt::format("{:09d}", abs % kNanosPerUnit);
  while (frac.size() > 2 && frac.back() == '0') frac.pop_back();
  return fmt::format("{}{}.{}", negative ? "-" : "", units, frac);
}

std::string Money::ToCentsString() const {
  std::string s = RoundToCents().ToString();
  return s;  // RoundToCents leaves exactly two significant decimals, ToString keeps two
}

}  // namespace yunzhi::platform
