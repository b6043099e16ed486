// The interpreter: expressions, statements and scoping against Jinja2's renderings, runtime
// errors with their positions, and the limits that stop hostile templates.

#include "engine/jinja/evaluator.h"

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "yunzhi/engine/chat_template.h"

#include "engine/jinja/render_case.h"

namespace yunzhi::engine::jinja {
namespace {

using jinja_test::RenderCase;
using jinja_test::RenderWithVars;

const RenderCase kExpressionCases[] = {
    {"Arithmetic",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 3 / 2 }} "
     "{{ 4 / 2 }} {{ 1 + 2 * 3 - 4 }}",
     "{}", true, "3 -4 2 -2 1024 0.5 1.5 2.0 3"},
    {"FloatFormatting",
     "{{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1.0 }} {{ -0.0 }} {{ 123456789.125 }} {{ 1.5e300 * "
     "1e10 }} {{ 10 % 3.5 }} {{ -7.5 // 2 }} {{ 0.0001 }}",
     "{}", true, "1e+16 1e-05 0.30000000000000004 1.0 -0.0 123456789.125 inf 3.0 -4.0 0.0001"},
    {"IntegerLiterals", "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000_000 }} {{ 1.5e3 }} {{ 00 }}",
     "{}", true, "31 15 5 1000000 1500.0 0"},
    {"StringLiteralEscapes",
     "{{ 'it\\'s' }}|{{ \"a\\tb\\\\c\" }}|{{ '\\u4e2d\\x41\\101' }}|{{ 'a' 'b' }}|{{ '\\q' }}",
     "{}", true,
     "it's|a\tb\\c|\xe4\xb8\xad"
     "AA|ab|\\q"},
    {"Concatenation", "{{ 'ab' ~ 1 ~ none ~ true ~ undefined_name ~ [1] }}", "{}", true,
     "ab1NoneTrue[1]"},
    {"Repetition", "{{ 'ab' * 3 }}{{ [1, 'x'] * 2 }}{{ 2 * 'c' }}{{ 'z' * -1 }}", "{}", true,
     "ababab[1, 'x', 1, 'x']cc"},
    {"ListAndTupleConcat", "{{ [1, 2] + [3] }} {{ (1,) + (2, 3) }}", "{}", true,
     "[1, 2, 3] (1, 2, 3)"},
    {"ReprOfContainers",
     "{{ [1, 'a', none, true, 1.5, {'k': \"v'\", 'n': [none]}] }} {{ (1,) }} {{ () }} {{ ('a', 2) "
     "}} {{ {} }}",
     "{}", true, "[1, 'a', None, True, 1.5, {'k': \"v'\", 'n': [None]}] (1,) () ('a', 2) {}"},
    {"ReprOfStrings",
     "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\tnl\\n\\x01', '\xe4\xb8\xad"
     "\xe6\x96\x87"
     "', '\\u00a0'] }}",
     "{}", true,
     "[\"it's\", 'say \"hi\"', 'both \\' \"', 'tab\\tnl\\n\\x01', '\xe4\xb8\xad"
     "\xe6\x96\x87"
     "', '\\xa0']"},
    {"Comparisons",
     "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < "
     "[1, 3] }} {{ 2 >= 2 }} {{ 'b' != 'b' }} {{ {'a': 1} == {'a': 1} }} {{ [1] == (1,) }}",
     "{}", true, "True False True True True True True False True False"},
    {"Membership",
     "{{ 'ab' in 'cabd' }} {{ 'x' in {'x': 1} }} {{ 1 in [1.0] }} {{ 3 not in [1, 2] }} {{ 'q' in "
     "undefined_name }}",
     "{}", true, "True True True True False"},
    {"LogicReturnsOperands",
     "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or [] }}|{{ not 0 }}|{{ not 'a' }}",
     "{}", true, "x|b||[]|True|False"},
    {"InlineIf",
     "{{ 'y' if true else 'n' }}{{ 'y' if false else 'n' }}[{{ 'y' if false }}]{{ ('y' if false) "
     "is defined }}{{ 1 if 0 else 2 if 0 else 3 }}",
     "{}", true, "yn[]False3"},
    {"Slicing",
     "{% set x = [1, 2, 3, 4, 5] %}{{ x[::-1] }}{{ x[1:] }}{{ x[-2:] }}{{ x[:2] }}{{ x[::2] }}{{ "
     "x[3:1:-1] }}{{ x[10:] }}{{ 'hello'[1:3] }}{{ '\xe4\xb8\xad"
     "\xe6\x96\x87"
     "\xe5\xad\x97"
     "'[1:] }}{{ 'abc'[::-1] }}{{ x[-1] }}{{ 'h\xc3\xa9"
     "llo'[1] }}",
     "{}", true,
     "[5, 4, 3, 2, 1][2, 3, 4, 5][4, 5][1, 2][1, 3, 5][4, 3][]el\xe6\x96\x87"
     "\xe5\xad\x97"
     "cba5\xc3\xa9"
     ""},
    {"AttributeVersusItem",
     "{% set d = {'items': 'key', 'a': {'b': [10, 20]}} %}{{ d['items'] }} {{ d.a.b[1] }} {{ "
     "d.a.b.0 }} {{ d['a']['b'][-1] }} {{ d.missing is defined }} {{ d['missing'] is defined }} {{ "
     "d.get('a').b }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }}",
     "{}", true, "key 20 10 20 False False [10, 20] dflt None"},
    {"UndefinedPrintsEmpty",
     "[{{ nothing }}][{{ nothing is defined }}][{{ none.attr }}][{{ none.attr is defined }}][{{ "
     "[1][5] is defined }}][{{ 'abc'.nope is defined }}][{{ nothing|length }}]",
     "{}", true, "[][False][][False][False][False][0]"},
    {"InputVariables",
     "{{ messages[0].role }}:{{ messages[0]['content'] }} {{ n + 1 }} {{ f * 2 }} {{ flag }} {{ "
     "nothing_here is none }} {{ obj.k }}",
     "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 41, \"f\": 1.25, "
     "\"flag\": false, \"obj\": {\"k\": [1, {\"z\": null}]}}",
     true, "user:hi 42 2.5 False False [1, {'z': None}]"},
    {"Unary",
     "{{ -3 }} {{ +3 }} {{ -(2 ** 2) }} {{ - 2 ** 2 }} {{ not true }} {{ -(x|default(2)) }}", "{}",
     true, "-3 3 -4 4 False -2"},
    {"FilterBindsTighterThanPlus",
     "{{ 'a' + ' b '|trim + 'c' }}|{{ -3|abs }}|{{ [3, 1]|sort|first }}", "{}", true, "abc|3|1"},
};

const RenderCase kStatementCases[] = {
    {"IfElifElse",
     "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% "
     "endfor %}",
     "{}", true, "one,two,many,"},
    {"LoopVariables",
     "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
     "loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ "
     "loop.nextitem }}{{ loop.cycle('x', 'y') }}{{ loop.depth }}|{% endfor %}",
     "{}", true, "1032TrueFalse3bx1|2121FalseFalse3acy1|3210FalseTrue3bx1|"},
    {"LoopElse",
     "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in [1] %}{{ x }}{% else %}no{% endfor "
     "%}",
     "{}", true, "empty1"},
    {"LoopFilterCountsKeptItems",
     "{% for x in range(10) if x is odd %}{{ x }}/{{ loop.length }}{{ ',' if not loop.last }}{% "
     "endfor %}",
     "{}", true, "1/5,3/5,5/5,7/5,9/5"},
    {"LoopOverDictAndItems",
     "{% set d = {'b': 1, 'a': 2} %}{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() "
     "%}{{ k }}={{ v }};{% endfor %} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %} {% for c "
     "in 'xyz' %}{{ c }}.{% endfor %}",
     "{}", true, "ba b=1;a=2; b1a2 x.y.z."},
    {"BreakAndContinue",
     "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% "
     "endif %}{{ i }}{% endfor %}",
     "{}", true, "0134"},
    {"SetInsideLoopDoesNotLeak",
     "{% set x = 0 %}{% for i in range(3) %}[{{ x }}]{% set x = i + 10 %}({{ x }}){% endfor %}{{ x "
     "}}",
     "{}", true, "[0](10)[0](11)[0](12)0"},
    {"SetInsideIfIsVisible", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", "{}", true, "5"},
    {"NamespaceCarriesState",
     "{% set ns = namespace(total=0, names=[]) %}{% for i in range(4) %}{% set ns.total = ns.total "
     "+ i %}{% set ns.names = ns.names + [i|string] %}{% endfor %}{{ ns.total }} {{ "
     "ns.names|join('-') }} {{ ns.missing is defined }}",
     "{}", true, "6 0-1-2-3 False"},
    {"NamespaceFromDict", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns }}",
     "{}", true, "12<Namespace {'a': 1, 'b': 2}>"},
    {"TupleAssignment",
     "{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set (c, d) = [3, 4] %}{{ c + d }}", "{}", true,
     "1two7"},
    {"BlockSet",
     "{% set greeting | upper %}  hello {{ name }}  {% endset %}[{{ greeting }}]{% set raw %}x{% "
     "endset %}{{ raw }}",
     "{\"name\": \"bob\"}", true, "[  HELLO BOB  ]x"},
    {"FilterBlock",
     "{% filter upper %}abc {{ 'd' }}{% endfilter %}|{% filter trim|title %}  two words  {% "
     "endfilter %}",
     "{}", true, "ABC D|Two Words"},
    {"WithBlock",
     "{% with a = 1, b = 2 %}{% set c = 3 %}{{ a + b + c }}{% endwith %}[{{ a }}{{ c }}]", "{}",
     true, "6[]"},
    {"MacroArguments",
     "{% macro m(a, b='B', c=none) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 2) "
     "}}|{{ m(1, c=3) }}|{{ m(b=5, a=4) }}|{{ m() }}",
     "{}", true, "1BNone|12None|1B3|45None|BNone"},
    {"MacroRecursion",
     "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro "
     "%}{{ fact(10) }}",
     "{}", true, "3628800"},
    {"MacroVarargsAndKwargs",
     "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}", "{}",
     true, "1(2, 3){'x': 4}"},
    {"MacroSeesCallerScopeAtCallTime",
     "{% macro m() %}{{ g }}{% endmacro %}{{ m() }}{% set g = 5 %}{{ m() }}", "{}", true, "5"},
    {"MacroInLoopSeesLoopVariable",
     "{% for i in range(2) %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}", "{}", true,
     "01"},
    {"PrintStatement", "{% print 'a', 1 %}{% print [1] %}", "{}", true, "a1[1]"},
    {"GenerationBlock", "a{% generation %}b{{ 1 }}{% endgeneration %}c", "{}", true, "ab1c"},
    {"NestedLoopsHaveTheirOwnLoopVariable",
     "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{% endfor %}{{ loop.index }};{% "
     "endfor %}",
     "{}", true, "121;122;"},
    {"LoopVariableDoesNotLeak", "{% set i = 9 %}{% for i in range(2) %}{% endfor %}{{ i }}", "{}",
     true, "9"},
    {"Joiner", "{% set j = joiner(', ') %}{% for x in 'abc' %}{{ j() }}{{ x }}{% endfor %}", "{}",
     true, "a, b, c"},
    {"Globals",
     "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, "
     "b=[2]) }} {{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %B %A %j %I %p %y %e|%-d|%U %W %V %G %u "
     "%w') }}",
     "{}", true,
     "[0, 1, 2] [1, 4, 7] [5, 3, 1] {'a': 1, 'b': [2]} 2024-07-26 09:05:03 Fri Jul July Friday 208 "
     "09 AM 24 26|26|29 30 30 2024 5 5"},
    {"UnknownFilterInDeadIfBranchIsFine", "{% if false %}{{ 1|nosuchfilter }}{% endif %}ok", "{}",
     true, "ok"},
    {"PercentOperator",
     "{{ '%s:%d' % ('a', 3) }}{{ '%.2f' % 2 }}{{ '%5s|%-5s|' % ('r', 'l') }}{{ '%%' % () }}", "{}",
     true, "a:32.00    r|l    |%"},
};

// Jinja2 raises for each of these; so must we.
const RenderCase kErrorCases[] = {
    {"NegateString", "{{ -'3'|int }}", "{}", false, ""},
    // jinja2: TypeError: bad operand type for unary -: 'str'
    {"AttributeOfUndefinedFails", "{{ x.y }}", "{}", false, ""},
    // jinja2: UndefinedError: 'x' is undefined
    {"ItemOfUndefinedFails", "{{ x['y'] }}", "{}", false, ""},
    // jinja2: UndefinedError: 'x' is undefined
    {"CallingUndefinedFails", "{{ x() }}", "{}", false, ""},
    // jinja2: UndefinedError: 'x' is undefined
    {"AddStringAndInt", "{{ 'a' + 1 }}", "{}", false, ""},
    // jinja2: TypeError: can only concatenate str (not "int") to str
    {"AddIntAndString", "{{ 1 + 'a' }}", "{}", false, ""},
    // jinja2: TypeError: unsupported operand type(s) for +: 'int' and 'str'
    {"AddUndefined", "{{ x + 1 }}", "{}", false, ""},
    // jinja2: UndefinedError: 'x' is undefined
    {"DivisionByZero", "{{ 1 / 0 }}", "{}", false, ""},
    // jinja2: ZeroDivisionError: division by zero
    {"OrderingMixedTypes", "{{ 'x' < 1 }}", "{}", false, ""},
    // jinja2: TypeError: '<' not supported between instances of 'str' and 'int'
    {"IterateNone", "{% for x in none %}{% endfor %}", "{}", false, ""},
    // jinja2: TypeError: 'NoneType' object is not iterable
    {"IntInString", "{{ 1 in 'a' }}", "{}", false, ""},
    // jinja2: TypeError: 'in <string>' requires string as left operand, not int
    {"NamespaceAttributeOnDict", "{% set d = {} %}{% set d.a = 1 %}", "{}", false, ""},
    // jinja2: TemplateRuntimeError: cannot assign attribute on non-namespace object
    {"UnpackMismatch", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", "{}", false, ""},
    // jinja2: ValueError: too many values to unpack (expected 2)
    {"RangeTooBig", "{{ range(100001)|length }}", "{}", false, ""},
    // jinja2: OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE
    // (100000).
    {"MutatingMethod", "{{ [1].append(2) }}", "{}", false, ""},
    // jinja2: SecurityError: access to attribute 'append' of 'list' object is unsafe.
    {"RaiseException", "{{ raise_exception('bad input: ' ~ 3) }}", "{}", false, ""},
    // jinja2: TemplateError: bad input: 3
    {"ToJsonOfUndefined", "{{ x|tojson }}", "{}", false, ""},
    // jinja2: TypeError: Object of type Undefined is not JSON serializable
    {"MacroTooManyArgs", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "{}", false, ""},
    // jinja2: TypeError: macro 'm' takes not more than 1 argument(s)
    {"ItemsOfList", "{{ [1]|items|list }}", "{}", false, ""},
    // jinja2: TypeError: Can only get item pairs from a mapping.
    {"JoinNone", "{{ none|join }}", "{}", false, ""},
    // jinja2: TypeError: 'NoneType' object is not iterable
    {"IndentOfUndefined", "{{ x|indent }}", "{}", false, ""},
    // jinja2: UndefinedError: 'x' is undefined
    {"UnknownFilterInIfAtRuntime", "{% if true %}{{ 1|nosuchfilter }}{% endif %}", "{}", false, ""},
    // jinja2: TemplateRuntimeError: No filter named 'nosuchfilter' found.
    {"SliceStepZero", "{{ [1][::0] }}", "{}", false, ""},
    // jinja2: ValueError: slice step cannot be zero
    {"NegativeRangeStepZero", "{{ range(1, 2, 0) }}", "{}", false, ""},
    // jinja2: ValueError: range() arg 3 must not be zero
    {"StrFormatMissingIndex", "{{ '{} {}'.format(1) }}", "{}", false, ""},
    // jinja2: IndexError: tuple index out of range
    {"PercentFormatMissingArg", "{{ '%s %s' % ('a',) }}", "{}", false, ""},
    // jinja2: TypeError: not enough arguments for format string
};

class ExpressionTest : public testing::TestWithParam<RenderCase> {};
TEST_P(ExpressionTest, RendersLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, ExpressionTest, testing::ValuesIn(kExpressionCases),
                         jinja_test::CaseName);

class StatementTest : public testing::TestWithParam<RenderCase> {};
TEST_P(StatementTest, RendersLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, StatementTest, testing::ValuesIn(kStatementCases),
                         jinja_test::CaseName);

class RuntimeErrorTest : public testing::TestWithParam<RenderCase> {};
TEST_P(RuntimeErrorTest, FailsLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, RuntimeErrorTest, testing::ValuesIn(kErrorCases),
                         jinja_test::CaseName);

Error RenderError(const std::string& source, const ChatTemplateLimits& limits = {}) {
  Result<ChatTemplate> tpl = ChatTemplate::Parse(source, limits);
  if (!tpl.has_value()) {
    ADD_FAILURE() << tpl.error().ToString();
    return tpl.error();
  }
  Result<std::string> out = tpl->Render(ChatInput{});
  if (out.has_value()) {
    ADD_FAILURE() << "renders: " << *out;
    return Error();
  }
  return out.error();
}

TEST(Interpreter, RuntimeErrorsCarryLineAndColumn) {
  Error e = RenderError("{% set a = 1 %}\n  {{ a + 'x' }}");
  EXPECT_EQ(e.code, Code::kInvalidArgument);
  EXPECT_EQ(e.detail, "chat_template_error");
  EXPECT_EQ(e.param, "messages");
  EXPECT_EQ(e.message,
            "chat template error at 2:8: unsupported operand type(s) for +: 'int' "
            "and 'str'");
  EXPECT_EQ(RenderError("{{ messages[0].role }}").message,
            "chat template error at 1:15: list object has no element 0");
  EXPECT_EQ(RenderError("x\n{{ '中文' ~ nope.attr }}").message,
            "chat template error at 2:15: 'nope' is undefined");
  EXPECT_EQ(RenderError("{% for m in 5 %}{% endfor %}").message,
            "chat template error at 1:13: 'int' object is not iterable");
  EXPECT_EQ(RenderError("{{ [1]|join|int|tojson(indent=none, x=1) }}").message,
            "chat template error at 1:17: tojson() got an unexpected keyword argument 'x'");
}

TEST(Interpreter, RaiseExceptionKeepsTheTemplatesMessage) {
  Error e =
      RenderError("{% if true %}{{ raise_exception('Only user and assistant roles') }}{% endif %}");
  EXPECT_EQ(e.code, Code::kInvalidArgument);
  EXPECT_EQ(e.message, "Only user and assistant roles");
  EXPECT_EQ(e.detail, "chat_template_exception");
}

TEST(Interpreter, LimitsSteps) {
  ChatTemplateLimits limits;
  limits.max_steps = 10'000;
  Error e = RenderError(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", limits);
  EXPECT_EQ(e.detail, "chat_template_limit");
  EXPECT_NE(e.message.find("exceeded the limit of 10000 steps"), std::string::npos) << e.message;
  // The default budget stops a 10^10-iteration template too.
  e = RenderError(
      "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_EQ(e.detail, "chat_template_limit");
}

TEST(Interpreter, LimitsOutputAndStringSizes) {
  ChatTemplateLimits limits;
  limits.max_output_bytes = 1000;
  EXPECT_EQ(RenderError("{% for i in range(200) %}0123456789{% endfor %}", limits).detail,
            "chat_template_limit");
  EXPECT_EQ(RenderError("{{ 'x' * 5000 }}", limits).detail, "chat_template_limit");
  // Doubling a string in a namespace: stopped long before memory runs out.
  Error e = RenderError(
      "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}");
  EXPECT_EQ(e.detail, "chat_template_limit");
  EXPECT_EQ(RenderError("{{ [1, 2] * 100000000 }}").detail, "chat_template_limit");
}

TEST(Interpreter, LimitsRecursion) {
  Error e = RenderError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_EQ(e.detail, "chat_template_limit");
  EXPECT_NE(e.message.find("macro calls are nested deeper than the limit of 100"),
            std::string::npos)
      << e.message;
  ChatTemplateLimits limits;
  limits.max_depth = 50;
  e = RenderError("{% macro f(n) %}{{ ((((f(n + 1))))) }}{% endmacro %}{{ f(0) }}", limits);
  EXPECT_NE(e.message.find("nested deeper than the limit of 50"), std::string::npos) << e.message;
}

TEST(Interpreter, DeepRecursionFitsASmallStack) {
  // The default limits keep stack use modest: run the worst case (recursion through nested list
  // literals, the largest frames) on a 320 KiB thread stack.
  std::string source = "{% macro f(n) %}{% if n < 1000 %}{{ " + std::string(20, '[') +
                       " f(n + 1) " + std::string(20, ']') +
                       " }}{% endif %}{% endmacro %}{{ f(0) }}";
  Result<ChatTemplate> tpl = ChatTemplate::Parse(source);
  ASSERT_TRUE(tpl.has_value());
  Result<std::string> out = std::string();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
#ifdef __SANITIZE_ADDRESS__
  constexpr size_t kStackBytes = 4 * (320 << 10);  // AddressSanitizer's redzones grow frames
#else
  constexpr size_t kStackBytes = 320 << 10;
#endif
  pthread_attr_setstacksize(&attr, kStackBytes);
  struct Job {
    const ChatTemplate* tpl;
    Result<std::string>* out;
  } job{&*tpl, &out};
  pthread_t thread;
  ASSERT_EQ(pthread_create(
                &thread, &attr,
                [](void* arg) -> void* {
                  auto* j = static_cast<Job*>(arg);
                  *j->out = j->tpl->Render(ChatInput{});
                  return nullptr;
                },
                &job),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().detail, "chat_template_limit");
}

TEST(Interpreter, RendersConcurrentlyFromOneParsedTemplate) {
  Result<ChatTemplate> tpl = ChatTemplate::Parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.content|upper }}{% endfor %}{{ ns.n }}");
  ASSERT_TRUE(tpl.has_value());
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        ChatInput input;
        input.messages =
            TemplateValue::Array{TemplateValue::Object{{"content", "t" + std::to_string(t)}},
                                 TemplateValue::Object{{"content", "x"}}};
        Result<std::string> out = tpl->Render(input);
        if (out.has_value()) results[static_cast<size_t>(t)] = *out;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 8; ++t) {
    EXPECT_EQ(results[static_cast<size_t>(t)], "T" + std::to_string(t) + "X2");
  }
}

TEST(Interpreter, NamespaceCyclesDoNotLeak) {
  // A namespace that contains itself would keep itself alive forever; the render clears the
  // namespaces it made when it ends. (LeakSanitizer builds check this.)
  Result<std::string> out =
      RenderWithVars("{% set ns = namespace() %}{% set ns.self = [ns] %}{{ ns.self|length }}");
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_EQ(*out, "1");
}

TEST(Interpreter, MissingTokensAreUndefined) {
  Result<ChatTemplate> tpl =
      ChatTemplate::Parse("[{{ bos_token }}|{{ bos_token is defined }}|{{ eos_token }}]");
  ASSERT_TRUE(tpl.has_value());
  ChatInput input;
  input.eos_token = "</s>";
  Result<std::string> out = tpl->Render(input);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "[|False|</s>]");
}

TEST(Interpreter, ToolsAndDocumentsAreNoneByDefaultAsInHuggingFace) {
  Result<std::string> out = RenderWithVars(
      "{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} {{ messages }}");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "True True True []");
}

}  // namespace
}  // namespace yunzhi::engine::jinja
