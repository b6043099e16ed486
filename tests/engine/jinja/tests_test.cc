// Jinja2 semantics of the built-in tests (`x is defined`, `x is string`, ...), checked against
// Jinja2's renderings.

#include "engine/jinja/tests.h"

#include <gtest/gtest.h>

#include "engine/jinja/render_case.h"

namespace yunzhi::engine::jinja {
namespace {

using jinja_test::RenderCase;

const RenderCase kTestCases[] = {
    {"TypeTests",
     "{{ x is defined }}{{ x is undefined }}{{ x is iterable }}{{ x is sequence }}{{ x is mapping "
     "}}{{ x is string }}{{ x is none }}|{{ 1 is number }}{{ true is number }}{{ true is integer "
     "}}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ 'a' is sequence }}{{ {} is "
     "sequence }}{{ 1 is iterable }}{{ 'a' is iterable }}{{ none is iterable }}{{ {} is mapping "
     "}}{{ [] is mapping }}",
     "{}", true,
     "FalseTrueTrueTrueFalseFalseFalse|TrueTrueFalseTrueTrueTrueTrueTrueFalseTrueFalseTrueFalse"},
    {"ValueTests",
     "{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ none is "
     "none }}{{ false is false }}{{ 0 is false }}{{ true is true }}{{ 'abc' is lower }}{{ 'aBc' is "
     "lower }}{{ 'ABC' is upper }}{{ 'a' is in 'abc' }}{{ 2 is in [1, 2] }}{{ 1 is eq 1.0 }}{{ 1 "
     "is ne 2 }}{{ 2 is gt 1 }}{{ 2 is lessthan 1 }}{{ 2 is ge 2 }}{{ none is sameas none }}{{ "
     "true is sameas true }}{{ range is callable }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ "
     "'nope' is filter }}",
     "{}", true,
     "TrueFalseTrueFalseTrueTrueFalseTrueTrueFalseTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrue"
     "TrueFalse"},
    {"NegatedTests",
     "{{ x is not defined }}{{ 1 is not string }}{{ not x is defined }}{{ x is not none }}", "{}",
     true, "TrueTrueTrueTrue"},
};

class JinjaTestTest : public testing::TestWithParam<RenderCase> {};
TEST_P(JinjaTestTest, RendersLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, JinjaTestTest, testing::ValuesIn(kTestCases),
                         jinja_test::CaseName);

TEST(Tests, AreFoundByName) {
  for (const char* name :
       {"defined",     "undefined",   "none",     "string",  "mapping",  "iterable", "sequence",
        "number",      "integer",     "float",    "boolean", "true",     "false",    "odd",
        "even",        "divisibleby", "lower",    "upper",   "callable", "sameas",   "in",
        "escaped",     "filter",      "test",     "eq",      "equalto",  "==",       "ne",
        "!=",          "lt",          "lessthan", "<",       "le",       "<=",       "gt",
        "greaterthan", ">",           "ge",       ">="}) {
    EXPECT_NE(FindTest(name), nullptr) << name;
  }
  EXPECT_EQ(FindTest("nosuchtest"), nullptr);
}

}  // namespace
}  // namespace yunzhi::engine::jinja
