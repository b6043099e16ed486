#include "engine/tokenizer_unicode.h"

#include <string>

#include <gtest/gtest.h>

namespace yunzhi::engine::internal {
namespace {

TEST(ValidUtf8SequenceLength, FollowsTheUnicodeWellFormednessTable) {
  EXPECT_EQ(ValidUtf8SequenceLength("a", 0), 1u);
  EXPECT_EQ(ValidUtf8SequenceLength("é", 0), 2u);
  EXPECT_EQ(ValidUtf8SequenceLength("中", 0), 3u);
  EXPECT_EQ(ValidUtf8SequenceLength("😀", 0), 4u);
  EXPECT_EQ(ValidUtf8SequenceLength("\x80", 0), 0u);              // stray continuation
  EXPECT_EQ(ValidUtf8SequenceLength("\xC0\xAF", 0), 0u);          // overlong
  EXPECT_EQ(ValidUtf8SequenceLength("\xE0\x80\xAF", 0), 0u);      // overlong
  EXPECT_EQ(ValidUtf8SequenceLength("\xED\xA0\x80", 0), 0u);      // surrogate
  EXPECT_EQ(ValidUtf8SequenceLength("\xF4\x90\x80\x80", 0), 0u);  // above U+10FFFF
  EXPECT_EQ(ValidUtf8SequenceLength("\xE4\xB8", 0), 0u);          // truncated
}

TEST(IncompleteUtf8Tail, CountsOnlyBytesThatCouldStillComplete) {
  EXPECT_EQ(IncompleteUtf8Tail(""), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xE4"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xE4\xB8"), 2u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xE4\xB8\xAD"), 0u);  // complete
  EXPECT_EQ(IncompleteUtf8Tail("a\xFF"), 0u);          // never valid: not held back
  EXPECT_EQ(IncompleteUtf8Tail("a\xE0\x80"), 0u);      // already invalid
}

TEST(AppendUtf8Lossy, ReplacesEachMaximalInvalidSubpartOnce) {
  std::string out;
  AppendUtf8Lossy(
      "a\xF0\x9F\x98"
      "b\xFF\xE4\xB8\xAD",
      &out);
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD中");
}

TEST(ByteLevelMapping, IsAReversibleMappingOfAllBytes) {
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");   // "Ġ"
  EXPECT_EQ(ByteToUnicode('\n'), "\xC4\x8A");  // "Ċ"
  EXPECT_EQ(ByteToUnicode('a'), "a");
  std::string all_mapped, all_bytes, back;
  for (int b = 0; b < 256; ++b) {
    all_mapped += ByteToUnicode(static_cast<uint8_t>(b));
    all_bytes += static_cast<char>(b);
  }
  ASSERT_TRUE(UnicodeToBytes(all_mapped, &back));
  EXPECT_EQ(back, all_bytes);
  EXPECT_FALSE(UnicodeToBytes("中", &back));  // not a mapped character
  EXPECT_FALSE(UnicodeToBytes(" ", &back));   // the raw space is never used by the mapping
}

TEST(TokenizerUnicode, NormalizesValidRunsAndKeepsInvalidBytes) {
  std::string out = "untouched";
  EXPECT_FALSE(NormalizeUtf8("plain ASCII", UnicodeNormalization::kNfc, &out));
  EXPECT_FALSE(NormalizeUtf8("caf\xC3\xA9 \xE4\xB8\xAD", UnicodeNormalization::kNfc, &out));
  EXPECT_FALSE(NormalizeUtf8("e\xCC\x81", UnicodeNormalization::kNone, &out));
  EXPECT_EQ(out, "untouched");
  // "e" + combining acute -> "é"; the invalid bytes around it stay where they were.
  ASSERT_TRUE(
      NormalizeUtf8("\xFF"
                    "e\xCC\x81\x80x",
                    UnicodeNormalization::kNfc, &out));
  EXPECT_EQ(out, "\xFF\xC3\xA9\x80x");
  // NFC keeps the "fi" ligature and full-width letters; NFKC folds them.
  EXPECT_FALSE(NormalizeUtf8("\xEF\xAC\x81\xEF\xBC\xA1", UnicodeNormalization::kNfc, &out));
  ASSERT_TRUE(NormalizeUtf8("\xEF\xAC\x81\xEF\xBC\xA1", UnicodeNormalization::kNfkc, &out));
  EXPECT_EQ(out, "fiA");
}

}  // namespace
}  // namespace yunzhi::engine::internal
