// Exact money: a signed count of 1e-9 currency units ("nanos"). No floating point anywhere.
//
// Rounding rules (the only two places where precision is lost):
//   - Money::ForQuantity(price, quantity, per): price × quantity / per, rounded half up (away
//     from zero for negative amounts) to 1e-9. Used for usage lines: "price per 1M tokens ×
//     tokens / 1,000,000".
//   - RoundToCents(): half up (away from zero) to 0.01. Statements round every line to cents and
//     the total is the sum of the rounded lines, so a statement adds up exactly as printed.
// Range: ±9.2e9 currency units. The checked functions (Parse, ForQuantity) return
// kInvalidArgument when a result would not fit; the operators assume amounts far below the limit
// (a tenant's monthly bill) and do not check.
//
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"

namespace yunzhi::platform {

class Money {
 public:
  static constexpr int64_t kNanosPerUnit = 1'000'000'000;

  constexpr Money() = default;
  static constexpr Money FromNanos(int64_t nanos) { return Money(nanos); }
  static constexpr Money Units(int64_t units) { return Money(units * kNanosPerUnit); }
  // Parses "12", "12.5", "-0.000000001", "+3.25". At most 9 decimals; no exponent, no spaces,
  // no thousands separators. Errors: kInvalidArgument naming the text.
  static Result<Money> Parse(std::string_view text);

  // price × quantity / per, rounded half up at 1e-9 (e.g. price per 1M tokens, per = 1'000'000).
  // Preconditions: per > 0. Errors: kInvalidArgument when the result does not fit.
  static Result<Money> ForQuantity(Money price, int64_t quantity, int64_t per);

  constexpr int64_t nanos() const { return nanos_; }
  // Half up (away from zero) to 0.01.
  Money RoundToCents() const;

  // Exact decimal text with at least 2 and at most 9 decimals, trailing zeros beyond the second
  // dropped: "12.30", "12.345678", "-0.000000001".
  std::string ToString() const;
  // Exactly two decimals; precondition-free: rounds half up to cents first.
  std::string ToCentsString() const;

  constexpr Money operator+(Money o) const { return Money(nanos_ + o.nanos_); }
  constexpr Money operator-(Money o) const { return Money(nanos_ - o.nanos_); }
  constexpr Money operator-() const { return Money(-nanos_); }
  Money& operator+=(Money o) { nanos_ += o.nanos_; return *this; }
  Money& operator-=(Money o) { nanos_ -= o.nanos_; return *this; }
  constexpr auto operator<=>(const Money&) const = default;

 private:
  constexpr explicit Money(int64_t nanos) : nanos_(nanos) {}
  int64_t nanos_ = 0;
};

}  // namespace yunzhi::platform
