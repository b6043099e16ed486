// UTF-8 helpers with Python str semantics.

#include "engine/jinja/utf8.h"

#include <gtest/gtest.h>

namespace yunzhi::engine::jinja::utf8 {
namespace {

TEST(Utf8, DecodesAndKeepsInvalidBytes) {
  std::string text = "a\xc3\xa9\xff\xe4\xb8";  // a, é, a stray byte, a truncated sequence
  std::vector<uint32_t> cps = ToCodePoints(text);
  EXPECT_EQ(cps, (std::vector<uint32_t>{'a', 0xE9, 0xDCFF, 0xDCE4, 0xDCB8}));
  EXPECT_EQ(FromCodePoints(cps), text);  // round trip, byte for byte
  EXPECT_EQ(Length(text), 5u);
  EXPECT_EQ(Length("\xed\xa0\x80"), 3u);  // an encoded surrogate is three invalid bytes
  EXPECT_EQ(Length("\xc0\x80"), 2u);      // overlong
}

TEST(Utf8, StripsUnicodeWhitespaceLikePython) {
  EXPECT_EQ(
      StripSpace(" \t\n\x0b\x0c\r\x1c\xc2\x85\xc2\xa0\xe3\x80\x80x y\xe2\x80\xa8 ", true, true),
      "x y");
  EXPECT_EQ(StripSpace("  x  ", true, false), "x  ");
  EXPECT_EQ(StripSpace("  x  ", false, true), "  x");
  EXPECT_EQ(StripSpace("x\xff ", false, true), "x\xff");
  EXPECT_EQ(StripChars("中a中文", "中文", true, true), "a");
  EXPECT_EQ(StripChars("xxaxx", "x", true, false), "axx");
}

TEST(Utf8, MapsCaseBeyondAscii) {
  EXPECT_EQ(Upper("straße àéÿ σας привет ｗ"), "STRASSE ÀÉŸ ΣΑΣ ПРИВЕТ Ｗ");
  EXPECT_EQ(Lower("ÀÉŸ ΣΑΣ ПРИВЕТ Ａ ĀĹ Σ AΣ-B"), "àéÿ σας привет ａ āĺ σ aς-b");
  EXPECT_EQ(Upper("中文"), "中文");
  EXPECT_TRUE(IsUpper(0x0100));
  EXPECT_TRUE(IsLower(0x0101));
  EXPECT_FALSE(IsUpper(0x4E2D));
}

TEST(Utf8, KnowsWhatPythonPrintsAsIs) {
  EXPECT_TRUE(IsPrintable('a'));
  EXPECT_TRUE(IsPrintable(0x4E2D));
  EXPECT_TRUE(IsPrintable(0x1F600));
  EXPECT_FALSE(IsPrintable('\n'));
  EXPECT_FALSE(IsPrintable(0xA0));
  EXPECT_FALSE(IsPrintable(0x200B));
  EXPECT_FALSE(IsPrintable(0xE000));
}

}  // namespace
}  // namespace yunzhi::engine::jinja::utf8
