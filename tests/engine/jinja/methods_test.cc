// Jinja2 semantics of Python's str, dict and list methods as templates call them, checked against
// Jinja2's renderings.

#include "engine/jinja/methods.h"

#include <gtest/gtest.h>

#include "engine/jinja/render_case.h"

namespace yunzhi::engine::jinja {
namespace {

using jinja_test::RenderCase;

const RenderCase kMethodCases[] = {
    {"StripFamily",
     "[{{ '  a  '.strip() }}][{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() }}][{{ "
     "'xyaxy'.strip('xy') }}][{{ '\\n\\nx\\n'.lstrip('\\n') }}][{{ 'ab\\n'.rstrip('\\n') }}][{{ "
     "'\xe4\xb8\xad"
     "a\xe4\xb8\xad"
     "'.strip('\xe4\xb8\xad"
     "') }}]",
     "{}", true, "[a][a  ][  a][a][x\n][ab][a]"},
    {"Split",
     "{{ ' a  b \\t c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b "
     "c'.split(none, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a b  '.rsplit(none, 1) }} {{ "
     "'x</think>y</think>z'.split('</think>')[-1] }} {{ 'l1\\nl2\\r\\nl3\\n'.splitlines() }} {{ "
     "'a\\nb'.splitlines(true) }} {{ ''.split() }} {{ ''.split(',') }}",
     "{}", true,
     "['a', 'b', 'c'] ['a', 'b', '', 'c'] ['a', 'b,c'] ['a', 'b c'] ['a,b', 'c'] ['  a', 'b'] z "
     "['l1', 'l2', 'l3'] ['a\\n', 'b'] [] ['']"},
    {"AffixesAndSearch",
     "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ "
     "'hello'.startswith('l', 2) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ "
     "'hello'.find('z') }} {{ 'hello'.index('e') }} {{ 'hello'.count('l') }} {{ 'aaa'.count('aa') "
     "}} {{ '\xe4\xb8\xad"
     "\xe6\x96\x87"
     "\xe4\xb8\xad"
     "'.find('\xe6\x96\x87"
     "') }} {{ 'hello'.removeprefix('he') }} {{ 'hello'.removesuffix('lo') }} {{ "
     "'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }}",
     "{}", true, "True True True 2 3 -1 1 2 1 1 llo hel ('a', '=', 'b=c') ('a=b', '=', 'c')"},
    {"CaseAndReplace",
     "{{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello world\\'s x-y'.title() }} "
     "{{ 'hELLO'.capitalize() }} {{ 'HeLLo'.swapcase() }} {{ 'aaa'.replace('a', 'b') }} {{ "
     "'aaa'.replace('a', 'b', 1) }} {{ 'abc'.isalpha() }} {{ '123'.isdigit() }} {{ 'abc'.islower() "
     "}} {{ 'ABC'.isupper() }} {{ '   '.isspace() }} {{ ''.isalpha() }}",
     "{}", true,
     "HELLO WORLD hello world Hello World'S X-Y Hello hEllO bbb baa True True True True True "
     "False"},
    {"JoinFormatPad",
     "{{ ', '.join(['a', 'b']) }} {{ '{} and {}'.format(1, 'x') }} {{ '{1}{0}'.format('a', 'b') }} "
     "{{ '{name}!'.format(name='hi') }} {{ '{:>5}|{:<4}|{:^5}|{:05d}|{:.2f}|{:,}'.format('r', 'l', "
     "'c', 42, 3.14159, 1234567) }} {{ '{0[k]}/{0.k}'.format({'k': 'v'}) }} {{ '{!r}'.format('q') "
     "}} {{ '42'.zfill(5) }} {{ '-4'.zfill(4) }} [{{ 'ab'.center(7, '*') }}] [{{ 'ab'.ljust(4) }}] "
     "[{{ 'ab'.rjust(4, '.') }}]",
     "{}", true,
     "a, b 1 and x ba hi!     r|l   |  c  |00042|3.14|1,234,567 v/v 'q' 00042 -004 [***ab**] [ab  "
     "] [..ab]"},
    {"DictAndListMethods",
     "{% set d = {'a': 1, 'b': [2]} %}{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list "
     "}} {{ d.get('a') }} {{ d.get('x', 0) }} {{ d.copy() }} {{ [1, 2, 1].count(1) }} {{ ['a', "
     "'b'].index('b') }} {{ (1, 2).index(2) }}",
     "{}", true, "['a', 'b'] [1, [2]] [('a', 1), ('b', [2])] 1 0 {'a': 1, 'b': [2]} 2 1 1"},
};

class MethodTest : public testing::TestWithParam<RenderCase> {};
TEST_P(MethodTest, RendersLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, MethodTest, testing::ValuesIn(kMethodCases), jinja_test::CaseName);

TEST(Methods, RefuseToMutate) {
  for (const char* source : {"{{ [1].append(2) }}", "{{ {'a': 1}.update({}) }}",
                             "{{ {'a': 1}.pop('a') }}", "{{ [1].sort() }}"}) {
    Result<std::string> out = jinja_test::RenderWithVars(source);
    ASSERT_FALSE(out.has_value()) << source;
    EXPECT_NE(out.error().message.find("is unsafe"), std::string::npos) << out.error().message;
  }
}

TEST(Methods, UnsupportedPythonMethodsFailClearly) {
  Result<std::string> out = jinja_test::RenderWithVars("{{ 'x'.encode('utf-8') }}");
  ASSERT_FALSE(out.has_value());
  EXPECT_NE(out.error().message.find("str.encode() is not supported"), std::string::npos);
  // They still exist as attributes, as in Python.
  out = jinja_test::RenderWithVars("{{ 'x'.encode is defined }}");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "True");
}

TEST(Methods, AttributeLookupPrefersMethodsAndItemLookupPrefersKeys) {
  EXPECT_EQ(GetItem(Value::FromDict([] {
                      Dict d;
                      d.Set("items", Value("key"));
                      return d;
                    }()),
                    Value("items"))
                .as_string(),
            "key");
  Dict d;
  d.Set("items", Value("key"));
  EXPECT_TRUE(GetAttribute(Value::FromDict(d), "items").is_callable());
  EXPECT_TRUE(GetAttribute(Value::None(), "x").is_undefined());
  EXPECT_THROW(GetAttribute(Value::Undefined("'u' is undefined"), "x"), TemplateError);
}

}  // namespace
}  // namespace yunzhi::engine::jinja
