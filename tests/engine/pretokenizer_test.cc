#include "engine/pretokenizer.h"

#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::engine::internal {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> SplitWith(std::string_view pre, std::string_view text) {
  auto patterns = PreTokenizerPatterns(pre);
  EXPECT_TRUE(patterns.has_value()) << pre;
  auto splitter = PreTokenizer::Create(*patterns);
  EXPECT_TRUE(splitter.has_value()) << splitter.error().ToString();
  std::vector<std::string_view> pieces;
  (*splitter)->Split(text, &pieces);
  std::string joined;
  for (const std::string_view p : pieces) {
    EXPECT_FALSE(p.empty());
    joined += p;
  }
  EXPECT_EQ(joined, text) << "pieces must cover the text exactly";
  return {pieces.begin(), pieces.end()};
}

TEST(PreTokenizer, Gpt2KeepsTheSpaceWithTheNextWord) {
  EXPECT_THAT(SplitWith("gpt-2", "Hello world's  end!!\n"),
              ElementsAre("Hello", " world", "'s", " ", " end", "!!", "\n"));
}

TEST(PreTokenizer, Llama3GroupsDigitsByThreeAndContractionsIgnoreCase) {
  EXPECT_THAT(SplitWith("llama-bpe", "1234567 WE'RE"),
              ElementsAre("123", "456", "7", " WE", "'RE"));
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
  EXPECT_THAT(SplitWith("qwen2", "x=42;\n\n"), ElementsAre("x", "=", "4", "2", ";\n\n"));
}

TEST(PreTokenizer, LettersAndSpacesAreUnicodeAware) {
  // \p{L} covers Chinese and Cyrillic; \s covers U+3000 IDEOGRAPHIC SPACE.
  EXPECT_THAT(SplitWith("gpt-2", "中文\xE3\x80\x80нещо"),
              ElementsAre("中文", "\xE3\x80\x80", "нещо"));
}

TEST(PreTokenizer, SequencesKeepGapsAsPieces) {
  // StarCoder: digits first, then GPT-2's regex on what is left.
  EXPECT_THAT(SplitWith("starcoder", "ab12 cd"), ElementsAre("ab", "1", "2", " cd"));
  // DeepSeek LLM: newlines, cased letters, ASCII/fullwidth symbols, CJK runs. The symbol
  // class [!-/:-~] includes the ASCII letters, so it splits "Ωmega" again (as HF does).
  EXPECT_THAT(SplitWith("deepseek-llm", "Hi 你好\nΩmega"),
              ElementsAre("Hi", " ", "你好", "\n", "Ω", "mega"));
}

TEST(PreTokenizer, InvalidUtf8EndsUpInGapPieces) {
  const std::string text =
      "ab\xFF"
      "cd \xE4\xB8 x";
  const auto pieces = SplitWith("gpt-2", text);
  EXPECT_GE(pieces.size(), 3u);
}

TEST(PreTokenizer, HugeWhitespaceRunsDoNotFail) {
  const std::string text = std::string(1 << 20, ' ') + "x" + std::string(1 << 20, '\n');
  const auto pieces = SplitWith("llama-bpe", text);
  EXPECT_LE(pieces.size(), 4u);
}

TEST(PreTokenizer, KnowsTheGgufNames) {
  for (const char* name : {"default", "gpt-2", "mpt", "llama-bpe", "llama3", "qwen2", "starcoder",
                           "refact", "falcon", "deepseek-coder", "deepseek-llm", "dbrx"}) {
    auto patterns = PreTokenizerPatterns(name);
    ASSERT_TRUE(patterns.has_value()) << name;
    EXPECT_TRUE(PreTokenizer::Create(*patterns).has_value()) << name;
  }
  EXPECT_EQ(PreTokenizerPatterns("no-such").error().code, Code::kUnimplemented);
}

}  // namespace
}  // namespace yunzhi::engine::internal
