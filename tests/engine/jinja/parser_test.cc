// The parser: what it accepts, and syntax errors reported with line:column.

#include "engine/jinja/parser.h"

#include <string>

#include <gtest/gtest.h>

#include "yunzhi/engine/chat_template.h"

#include "engine/jinja/lexer.h"

namespace yunzhi::engine::jinja {
namespace {

std::string SyntaxError(const std::string& source, const ChatTemplateLimits& limits = {}) {
  Result<ChatTemplate> parsed = ChatTemplate::Parse(source, limits);
  if (parsed.has_value()) {
    ADD_FAILURE() << "parses: " << source;
    return "";
  }
  EXPECT_EQ(parsed.error().code, Code::kInvalidArgument);
  EXPECT_EQ(parsed.error().detail, "chat_template_syntax_error");
  return parsed.error().message;
}

TEST(Parser, ReportsLineAndColumn) {
  EXPECT_EQ(SyntaxError("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}"),
            "chat template syntax error at 3:10: unexpected 'end of print statement'");
  EXPECT_EQ(SyntaxError("{{ 'x' }}\n中文 {{ a b }}"),
            "chat template syntax error at 2:9: expected '}}', got 'b'");
}

TEST(Parser, ReportsUnclosedBlocks) {
  EXPECT_EQ(SyntaxError("{% for m in messages %}\n{{ m }}"),
            "chat template syntax error at 2:8: Unexpected end of template. Jinja was looking "
            "for the following tags: 'endfor' or 'else'. The innermost block that needs to be "
            "closed is 'for'.");
  EXPECT_EQ(SyntaxError("{% if a %}{% endfor %}"),
            "chat template syntax error at 1:14: Encountered unknown tag 'endfor'. The innermost "
            "block that needs to be closed is 'if'.");
}

TEST(Parser, RejectsUnknownAndUnsupportedTags) {
  EXPECT_EQ(SyntaxError("{% frobnicate %}"),
            "chat template syntax error at 1:4: Encountered unknown tag 'frobnicate'.");
  EXPECT_EQ(SyntaxError("{% include 'x.jinja' %}"),
            "chat template syntax error at 1:4: the 'include' tag is not supported in chat "
            "templates");
  EXPECT_EQ(SyntaxError("{% extends 'base' %}"),
            "chat template syntax error at 1:4: the 'extends' tag is not supported in chat "
            "templates");
  EXPECT_EQ(SyntaxError("{% for x in y recursive %}{% endfor %}"),
            "chat template syntax error at 1:15: recursive loops are not supported");
}

TEST(Parser, ChecksFilterAndTestNamesOutsideIfBlocks) {
  EXPECT_EQ(SyntaxError("{{ x|nosuchfilter }}"),
            "chat template syntax error at 1:6: No filter named 'nosuchfilter'.");
  EXPECT_EQ(SyntaxError("{% for a in b %}{{ a is nosuchtest }}{% endfor %}"),
            "chat template syntax error at 1:22: No test named 'nosuchtest'.");
  // Jinja2 defers the check to run time inside if-statements and inline ifs.
  EXPECT_TRUE(ChatTemplate::Parse("{% if a %}{{ x|nosuchfilter }}{% endif %}").has_value());
  EXPECT_TRUE(ChatTemplate::Parse("{{ x|nosuchfilter if a else 1 }}").has_value());
  // ... but not inside a loop nested in the if.
  EXPECT_FALSE(ChatTemplate::Parse("{% if a %}{% for i in b %}{{ i|nope }}{% endfor %}{% endif %}")
                   .has_value());
}

TEST(Parser, RejectsMisplacedConstructs) {
  EXPECT_EQ(SyntaxError("{% break %}"),
            "chat template syntax error at 1:4: 'break' outside of a loop");
  EXPECT_EQ(SyntaxError("{% for a in b %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}"),
            "chat template syntax error at 1:35: 'continue' outside of a loop");
  EXPECT_EQ(SyntaxError("{% macro m(a=1, b) %}{% endmacro %}"),
            "chat template syntax error at 1:18: non-default argument follows default argument");
  EXPECT_EQ(SyntaxError("{% set true = 1 %}"),
            "chat template syntax error at 1:8: can't assign to 'const'");
  EXPECT_EQ(SyntaxError("{{ a is defined is string }}"),
            "chat template syntax error at 1:17: You cannot chain multiple tests with is");
  EXPECT_EQ(SyntaxError("{{ }}"),
            "chat template syntax error at 1:4: Expected an expression, got 'end of print "
            "statement'");
}

TEST(Parser, LimitsNesting) {
  std::string deep = "{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}";
  EXPECT_NE(SyntaxError(deep).find("template nesting is deeper than the limit of 200"),
            std::string::npos);
  std::string blocks;
  for (int i = 0; i < 300; ++i) blocks += "{% if x %}";
  for (int i = 0; i < 300; ++i) blocks += "{% endif %}";
  EXPECT_NE(SyntaxError(blocks).find("nesting"), std::string::npos);
  std::string lists = "{{ " + std::string(250, '[') + std::string(250, ']') + " }}";
  EXPECT_NE(SyntaxError(lists).find("nesting"), std::string::npos);
  // Within the limit it parses.
  std::string ok = "{{ " + std::string(50, '(') + "1" + std::string(50, ')') + " }}";
  EXPECT_TRUE(ChatTemplate::Parse(ok).has_value());
}

TEST(Parser, LimitsSourceSize) {
  ChatTemplateLimits limits;
  limits.max_source_bytes = 10;
  Result<ChatTemplate> parsed = ChatTemplate::Parse("{{ 'a long template' }}", limits);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().detail, "chat_template_limit");
}

TEST(Parser, BuildsTheTreeOfATemplate) {
  std::vector<Token> tokens =
      Tokenize("a{% for x in y if x %}{{ x|upper }}{% else %}e{% endfor %}");
  StmtList body = Parse(tokens, 100);
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]->kind, StmtKind::kText);
  ASSERT_EQ(body[1]->kind, StmtKind::kFor);
  const auto& loop = static_cast<const ForStmt&>(*body[1]);
  EXPECT_EQ(loop.target.name, "x");
  EXPECT_NE(loop.filter, nullptr);
  ASSERT_EQ(loop.body.size(), 1u);
  EXPECT_EQ(loop.body[0]->kind, StmtKind::kPrint);
  const auto& print = static_cast<const PrintStmt&>(*loop.body[0]);
  ASSERT_EQ(print.expr->kind, ExprKind::kFilter);
  EXPECT_EQ(static_cast<const FilterExpr&>(*print.expr).name, "upper");
  EXPECT_EQ(loop.else_body.size(), 1u);
}

}  // namespace
}  // namespace yunzhi::engine::jinja
