// The lexer: tokens, source positions, and the whitespace control Hugging Face's environment
// uses (trim_blocks, lstrip_blocks, `-` and `+` modifiers), checked against Jinja2.

#include "engine/jinja/lexer.h"

#include <gtest/gtest.h>

#include "engine/jinja/render_case.h"
#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {
namespace {

using jinja_test::RenderCase;

const RenderCase kWhitespaceCases[] = {
    {"LstripAndTrimBlocks", "a\n  {% if true %}\n  x\n  {% endif %}\nb", "{}", true, "a\n  x\nb"},
    {"ExpressionTagsAreNotLstripped", "a\n  {{ 1 }}\n  {# c #}\nb", "{}", true, "a\n  1\nb"},
    {"PlusKeepsIndentation", "  {%+ if true %}x{% endif %}", "{}", true, "  x"},
    {"MinusStripsAllWhitespace", "a  {%- if true -%}  x  {%- endif %}\n\n", "{}", true, "ax"},
    {"MinusOnExpressions", "x {{- 'a' -}} \n y", "{}", true, "xay"},
    {"MinusRightAfterBraceIsStripNotNegation", "{{-1}}", "{}", true, "1"},
    {"PlusKeepsNewlineAfterBlock", "{% if true +%}\nA{% endif %}", "{}", true, "\nA"},
    {"OneTrailingNewlineIsDropped", "a\n\n", "{}", true, "a\n"},
    {"LineEndingsAreNormalized", "a\r\nb\rc\r\n", "{}", true, "a\nb\nc"},
    {"CommentEatsItsNewline", "{# note #}\nx\n  {#- trimmed -#}  \ny", "{}", true, "xy"},
    {"TabsAreLstripped", "\t{% if 1 %}x{% endif %}", "{}", true, "x"},
    {"LoopBodyLines", "{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\n", "{}", true,
     "  0\n  1\n  2\n"},
    {"RawBlock", "{% raw %}\n  {{ x }}{% if %}\n  {% endraw %}\ny", "{}", true,
     "\n  {{ x }}{% if %}\ny"},
    {"TextBeforeTagOnSameLineIsKept", "a {% if true %}b{% endif %} c", "{}", true, "a b c"},
    {"MacroBodyWhitespace", "{% macro m(x) %}\n  [{{ x }}]\n{% endmacro %}\n{{ m(1) }}{{ m(2) }}",
     "{}", true, "  [1]\n  [2]\n"},
};

class WhitespaceControlTest : public testing::TestWithParam<RenderCase> {};

TEST_P(WhitespaceControlTest, RendersLikeJinja2) {
  jinja_test::ExpectRendersLikeJinja2(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Jinja2, WhitespaceControlTest, testing::ValuesIn(kWhitespaceCases),
                         jinja_test::CaseName);

TEST(Lexer, TokenizesAnExpressionTag) {
  std::vector<Token> tokens = Tokenize("a{{ x.y|f(1, 'z') >= 2.5 }}b");
  std::vector<TokenType> types;
  std::vector<std::string> texts;
  for (const Token& t : tokens) {
    types.push_back(t.type);
    texts.push_back(t.text);
  }
  EXPECT_EQ(types,
            (std::vector<TokenType>{TokenType::kData, TokenType::kVariableBegin, TokenType::kName,
                                    TokenType::kOperator, TokenType::kName, TokenType::kOperator,
                                    TokenType::kName, TokenType::kOperator, TokenType::kInteger,
                                    TokenType::kOperator, TokenType::kString, TokenType::kOperator,
                                    TokenType::kOperator, TokenType::kFloat,
                                    TokenType::kVariableEnd, TokenType::kData, TokenType::kEof}));
  EXPECT_EQ(texts[10], "z");
  EXPECT_EQ(texts[12], ">=");
  EXPECT_EQ(tokens[13].float_value, 2.5);
  EXPECT_EQ(tokens[2].offset, 4u);
}

TEST(Lexer, BracesInsideATagDoNotEndIt) {
  std::vector<Token> tokens = Tokenize("{{ {'a': {'b': 1}}}}");
  ASSERT_GE(tokens.size(), 3u);
  EXPECT_EQ(tokens[tokens.size() - 2].type, TokenType::kVariableEnd);
  EXPECT_EQ(tokens[tokens.size() - 2].offset, 18u);
}

TEST(Lexer, NormalizesLineEndingsAndDropsOneTrailingNewline) {
  EXPECT_EQ(NormalizeSource("a\r\nb\rc\n\n"), "a\nb\nc\n");
  EXPECT_EQ(NormalizeSource("\n"), "");
  EXPECT_EQ(NormalizeSource("x"), "x");
}

TEST(Lexer, PositionsCountLinesAndCodePoints) {
  std::string_view src = "ab\n中文x\n";
  EXPECT_EQ(PositionOf(src, 0).line, 1);
  EXPECT_EQ(PositionOf(src, 0).column, 1);
  SourcePosition p = PositionOf(src, 9);  // the 'x' after two 3-byte characters
  EXPECT_EQ(p.line, 2);
  EXPECT_EQ(p.column, 3);
}

void ExpectSyntaxError(std::string_view source, std::string_view message, uint32_t offset) {
  try {
    Tokenize(source);
    ADD_FAILURE() << "no error for " << source;
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.kind(), TemplateError::Kind::kSyntax);
    EXPECT_EQ(e.message(), message);
    EXPECT_EQ(e.offset(), offset);
  }
}

TEST(Lexer, ReportsErrorsWithOffsets) {
  ExpectSyntaxError("ab{# never closed", "Missing end of comment tag", 4);
  ExpectSyntaxError("{% raw %}x", "Missing end of raw directive", 9);
  ExpectSyntaxError("{{ a ) }}", "unexpected ')'", 5);
  ExpectSyntaxError("{{ (a] }}", "unexpected ']', expected ')'", 5);
  ExpectSyntaxError("{{ a ? b }}", "unexpected char '?'", 5);
  ExpectSyntaxError("{{ 'open }}", "unexpected char \"'\"", 3);
  ExpectSyntaxError("{{ 99999999999999999999 }}", "integer literal too large", 3);
  ExpectSyntaxError("{{ '\\x4' }}", "truncated \\xXX escape", 3);
}

}  // namespace
}  // namespace yunzhi::engine::jinja
