#include "yunzhi/platform/money.h"

#include <gtest/gtest.h>

namespace yunzhi::platform {
namespace {

Money M(std::string_view s) {
  auto m = Money::Parse(s);
  EXPECT_TRUE(m.has_value()) << s;
  return m.value_or(Money());
}

TEST(Money, ParsesAndPrintsExactly) {
  EXPECT_EQ(M("12.345678").nanos(), 12'345'678'000);
  EXPECT_EQ(M("12.345678").ToString(), "12.345678");
  EXPECT_EQ(M("12").ToString(), "12.00");
  EXPECT_EQ(M("12.3").ToString(), "12.30");
  EXPECT_EQ(M("0.000000001").ToString(), "0.000000001");
  EXPECT_EQ(M("-0.000000001").nanos(), -1);
  EXPECT_EQ(M("-0.000000001").ToString(), "-0.000000001");
  EXPECT_EQ(M("+3.25").nanos(), 3'250'000'000);
  EXPECT_EQ(M(".5").nanos(), 500'000'000);
  EXPECT_EQ(M("999999999.999999999").ToString(), "999999999.999999999");
}

TEST(Money, RejectsMalformedText) {
  for (std::string_view bad : {"", "-", ".", "1.", "1.2.3", "1e5", " 1", "1,000", "abc",
                               "0.0000000001", "1234567890123"}) {
    auto m = Money::Parse(bad);
    ASSERT_FALSE(m.has_value()) << bad;
    EXPECT_EQ(m.error().code, Code::kInvalidArgument);
  }
}

TEST(Money, ForQuantityRoundsHalfUpAtNanos) {
  // 0.000001 per 1M tokens × 1 token = 1e-12: rounds to 0; × 500'000 tokens = 0.5e-9 → 1 nano.
  EXPECT_EQ(Money::ForQuantity(M("0.000001"), 1, 1'000'000)->nanos(), 0);
  EXPECT_EQ(Money::ForQuantity(M("0.000000001"), 500'000, 1'000'000)->nanos(), 1);
  EXPECT_EQ(Money::ForQuantity(M("0.000000001"), 499'999, 1'000'000)->nanos(), 0);
  // Negative amounts round away from zero at the half.
  EXPECT_EQ(Money::ForQuantity(M("-0.000000001"), 500'000, 1'000'000)->nanos(), -1);
  // 2.5 per 1M × 123'457 tokens = 0.3086425 exactly.
  EXPECT_EQ(Money::ForQuantity(M("2.5"), 123'457, 1'000'000)->ToString(), "0.3086425");
  // 3 per 1,000 pages × 7 pages = 0.021.
  EXPECT_EQ(Money::ForQuantity(M("3"), 7, 1'000)->ToString(), "0.021");
  // Large products go through 128 bits: 1000 per 1M × 9e12 tokens = 9,000,000,000.
  EXPECT_EQ(Money::ForQuantity(M("1000"), 9'000'000'000'000, 1'000'000)->ToString(), "9000000000.00");
  EXPECT_FALSE(Money::ForQuantity(M("1000000"), 9'000'000'000'000'000, 1).has_value());
  EXPECT_FALSE(Money::ForQuantity(M("1"), 1, 0).has_value());
}

TEST(Money, RoundsToCentsHalfUp) {
  EXPECT_EQ(M("0.005").RoundToCents().ToString(), "0.01");
  EXPECT_EQ(M("0.004999999").RoundToCents().ToString(), "0.00");
  EXPECT_EQ(M("1.995").RoundToCents().ToString(), "2.00");
  EXPECT_EQ(M("-0.005").RoundToCents().ToString(), "-0.01");
  EXPECT_EQ(M("12.345678").ToCentsString(), "12.35");
}

TEST(Money, Arithmetic) {
  EXPECT_EQ((M("0.1") + M("0.2")).ToString(), "0.30");  // no binary floating point surprise
  EXPECT_EQ((M("1") - M("1.000000001")).ToString(), "-0.000000001");
  EXPECT_LT(M("0.999999999"), M("1"));
}

}  // namespace
}  // namespace yunzhi::platform
