// Jinja2 semantics of the built-in filters (Hugging Face's tojson included), checked against
// Jinja2's renderings.

#include "engine/jinja/filters.h"

#include <gtest/gtest.h>

#include "engine/jinja/render_case.h"

namespace yunzhi::engine::jinja {
namespace {

using jinja_test::RenderCase;

const RenderCase kFilterCases[] = {
    {"Trim",
     "[{{ '  a b \\n'|trim }}][{{ 'xxaxx'|trim('x') }}][{{ 42|trim }}][{{ nothing|trim }}][{{ "
     "'\\u3000a\\u00a0'|trim }}]",
     "{}", true, "[a b][a][42][][a]"},
    {"CaseFilters",
     "{{ 'hello wORLD it\\'s x-y (ab)'|title }}|{{ 'hELLO world'|capitalize }}|{{ 'Stra\xc3\x9f"
     "e'|upper }}|{{ '\xc3\x80"
     "\xc3\x89"
     "\xc3\x8e"
     " \xce\xa3"
     "\xce\x91"
     "\xce\xa3"
     " \xd0\x9f"
     "\xd1\x80"
     "\xd0\xb8"
     "\xd0\xb2"
     "\xd0\xb5"
     "\xd1\x82"
     "'|lower }}|{{ '\xc3\xa0"
     "\xc3\xa9"
     "\xc3\xae"
     " \xcf\x83"
     "\xce\xb1"
     "\xcf\x82"
     " \xd0\xbf"
     "\xd1\x80"
     "\xd0\xb8"
     "\xd0\xb2"
     "\xd0\xb5"
     "\xd1\x82"
     "'|upper }}",
     "{}", true,
     "Hello World It's X-Y (Ab)|Hello world|STRASSE|\xc3\xa0"
     "\xc3\xa9"
     "\xc3\xae"
     " \xcf\x83"
     "\xce\xb1"
     "\xcf\x82"
     " \xd0\xbf"
     "\xd1\x80"
     "\xd0\xb8"
     "\xd0\xb2"
     "\xd0\xb5"
     "\xd1\x82"
     "|\xc3\x80"
     "\xc3\x89"
     "\xc3\x8e"
     " \xce\xa3"
     "\xce\x91"
     "\xce\xa3"
     " \xd0\x9f"
     "\xd0\xa0"
     "\xd0\x98"
     "\xd0\x92"
     "\xd0\x95"
     "\xd0\xa2"
     ""},
    {"Replace",
     "{{ 'aaaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 'x.y.z'|replace('.', '/') "
     "}} {{ 123|replace('2', 'two') }}",
     "{}", true, "bbaa -a-b-c- x/y/z 1two3"},
    {"Join",
     "{{ [1, 'a', none]|join(', ') }}|{{ 'abc'|join('-') }}|{{ [{'n': 'x'}, {'n': 'y'}]|join('+', "
     "attribute='n') }}|{{ []|join('x') }}",
     "{}", true, "1, a, None|a-b-c|x+y|"},
    {"Default",
     "{{ nothing|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ "
     "none|default('d') }}|{{ 0|d('z', boolean=true) }}|{{ nothing|default }}",
     "{}", true, "d||d|None|z|"},
    {"FirstLastLength",
     "{{ [3, 4]|first }}{{ [3, 4]|last }}{{ 'xyz'|first }}{{ 'xyz'|last }}{{ {'a': 1, 'b': "
     "2}|first }}{{ {'a': 1, 'b': 2}|last }}{{ []|first is defined }}{{ 'h\xc3\xa9"
     "llo'|length }}{{ {'a': 1}|count }}{{ [1, 2]|length }}",
     "{}", true, "34xzabFalse512"},
    {"ListItemsString",
     "{{ 'ab'|list }}{{ {'x': 1, 'y': 2}|list }}{{ {'x': 1}|items|list }}{{ nothing|items|list "
     "}}{{ [1, 2]|string }}{{ none|string }}{{ 1.0|string }}",
     "{}", true, "['a', 'b']['x', 'y'][('x', 1)][][1, 2]None1.0"},
    {"IntAndFloat",
     "{{ '42'|int }} {{ ' -7 '|int }} {{ '4.9'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ "
     "'0x1A'|int(0, 16) }} {{ 'ff'|int(base=16) }} {{ 3.99|int }} {{ true|int }} {{ '1_000'|int }} "
     "{{ '2.5'|float }} {{ 'nope'|float }} {{ 3|float }} {{ '1e3'|float }}",
     "{}", true, "42 -7 4 0 5 26 255 3 1 1000 2.5 0.0 3.0 1000.0"},
    {"AbsRoundSum",
     "{{ -3|abs }} {{ -2.5|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ "
     "42.55|round(1, 'floor') }} {{ 42.51|round(1, 'ceil') }} {{ 7|round }} {{ 1234.5|round(-2) }} "
     "{{ [1, 2, 3]|sum }} {{ [{'v': 1.5}, {'v': 2}]|sum(attribute='v') }} {{ [[1], "
     "[2]]|sum(start=[]) }}",
     "{}", true, "3 2.5 2.0 4.0 2.67 42.5 42.6 7 1200.0 6 3.5 [1, 2]"},
    {"MinMaxSortUnique",
     "{{ [3, 1, 2]|max }}{{ [3, 1, 2]|min }}{{ ['b', 'A', 'c']|max }}{{ []|max is defined }} {{ "
     "['b', 'A', 'a', 'C']|sort }} {{ ['b', 'A', 'a', 'C']|sort(case_sensitive=true) }} {{ [3, 1, "
     "2]|sort(reverse=true) }} {{ ['b', 'A', 'a', 'B']|unique|list }} {{ ['b', 'A', "
     "'a']|unique(case_sensitive=true)|list }}",
     "{}", true,
     "31cFalse ['A', 'a', 'b', 'C'] ['A', 'C', 'a', 'b'] [3, 2, 1] ['b', 'A'] ['b', 'A', 'a']"},
    {"SortByAttribute",
     "{{ users|sort(attribute='age')|map(attribute='name')|join(',') }} {{ "
     "users|sort(attribute='age,name')|map(attribute='name')|join(',') }} {{ "
     "users|max(attribute='age') }} {{ users|unique(attribute='age')|map(attribute='name')|list }}",
     "{\"users\": [{\"name\": \"b\", \"age\": 3}, {\"name\": \"a\", \"age\": 1}, {\"name\": \"c\", "
     "\"age\": 3}, {\"name\": \"A\", \"age\": 2}]}",
     true, "a,A,b,c a,A,b,c {'name': 'b', 'age': 3} ['b', 'a', 'A']"},
    {"Dictsort",
     "{{ {'b': 1, 'A': 3, 'a': 2}|dictsort }} {{ {'b': 1, 'A': 3, 'a': 2}|dictsort(true) }} {{ "
     "{'b': 1, 'a': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}",
     "{}", true,
     "[('A', 3), ('a', 2), ('b', 1)] [('A', 3), ('a', 2), ('b', 1)] [('b', 1), ('a', 2)] [('b', "
     "1), ('a', 2)]"},
    {"MapSelectReject",
     "{{ msgs|map(attribute='role')|list }} {{ msgs|map(attribute='x', default='-')|list }} {{ "
     "['a', 'B']|map('upper')|list }} {{ ['a', 'bb']|map('length')|list }} {{ "
     "msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ "
     "msgs|rejectattr('role', 'eq', 'user')|list|length }} {{ "
     "msgs|selectattr('tool_calls')|list|length }} {{ msgs|selectattr('tool_calls', "
     "'defined')|list|length }} {{ [0, 1, 2, 3]|select('odd')|list }} {{ [0, 1, '', "
     "'a']|select|list }} {{ [1, 2, 3, 4]|reject('divisibleby', 2)|list }} {{ ['a', "
     "'code_interpreter', 'b']|reject('equalto', 'code_interpreter')|join(', ') }} {{ [1, 5, "
     "9]|select('>', 4)|list }} {{ nothing|select|list }}",
     "{\"msgs\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": "
     "\"u1\"}, {\"role\": \"assistant\", \"content\": \"a\", \"tool_calls\": [1]}, {\"role\": "
     "\"user\", \"content\": \"u2\"}]}",
     true,
     "['system', 'user', 'assistant', 'user'] ['-', '-', '-', '-'] ['A', 'B'] [1, 2] ['u1', 'u2'] "
     "2 1 1 [1, 3] [1, 'a'] [1, 3] a, b [5, 9] []"},
    {"Indent",
     "[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb'|indent(2, true) }}][{{ 'a\\n\\nb'|indent(2, "
     "blank=true) }}][{{ 'a\\nb'|indent('> ') }}][{{ 'x'|indent(first=true) }}][{{ "
     "'a\\r\\nb\\u2028c'|indent(1) }}]",
     "{}", true, "[a\n    b\n\n    c][  a\n  b][a\n  \n  b][a\n> b][    x][a\n b\n c]"},
    {"BatchSliceReverse",
     "{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 'x')|list }} {{ [1, 2, 3, 4, "
     "5]|slice(2)|list }} {{ [1, 2, 3, 4]|slice(3, 0)|list }} {{ [1, 2, 3]|reverse|list }} {{ "
     "'abc'|reverse }} {{ {'a': 1, 'b': 2}|reverse|list }}",
     "{}", true,
     "[[1, 2], [3, 4], [5]] [[1, 2], [3, 'x']] [[1, 2, 3], [4, 5]] [[1, 2], [3, 0], [4, 0]] [3, 2, "
     "1] cba ['b', 'a']"},
    {"TextUtilities",
     "{{ 'one two  three'|wordcount }} {{ 'hello world foo bar'|truncate(11) }} {{ 'hello world "
     "foo bar'|truncate(11, true) }} {{ 'hello world'|truncate(9, leeway=0) }} [{{ 'ab'|center(6) "
     "}}] {{ '%s-%05.1f-%d-%x-%r'|format('a', 3.14159, 7.9, 255, 'q') }} {{ "
     "'%(a)s=%(b)d'|format(a='x', b=2) }} {{ '<a href=\"x\">&\\'</a>'|e }} {{ 'x'|safe }}",
     "{}", true,
     "3 hello... hello wo... hello... [  ab  ] a-003.1-7-ff-'q' x=2 &lt;a "
     "href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt; x"},
    {"Attr",
     "{{ {'items': 1}|attr('items') is defined }} {{ {'k': 1}|attr('k') is defined }} {{ "
     "ns_obj|attr('v') }}",
     "{\"ns_obj\": {\"v\": 3}}", true, "True False "},
    {"ToJsonDefaults", "{{ data|tojson }}",
     "{\"data\": {\"b\": [1, 2.5, \"x\", null, true, false], \"a\": {\"nested\": \"\xe4\xb8\xad"
     "\xe6\x96\x87"
     " \\\"q\\\" \\\\ \\n\\t\\u0001\x7f"
     "\", \"e\": {}, \"l\": []}, \"num\": -0.0, \"big\": 1.2345678901234567e+19, \"small\": "
     "1e-07}}",
     true,
     "{\"b\": [1, 2.5, \"x\", null, true, false], \"a\": {\"nested\": \"\xe4\xb8\xad"
     "\xe6\x96\x87"
     " \\\"q\\\" \\\\ \\n\\t\\u0001\x7f"
     "\", \"e\": {}, \"l\": []}, \"num\": -0.0, \"big\": 1.2345678901234567e+19, \"small\": "
     "1e-07}"},
    {"ToJsonIndent",
     "{{ data|tojson(indent=2) }}|{{ data|tojson(indent=0) }}|{{ data|tojson(indent='\\t') }}",
     "{\"data\": {\"b\": [1, {\"c\": []}], \"a\": {}}}", true,
     "{\n  \"b\": [\n    1,\n    {\n      \"c\": []\n    }\n  ],\n  \"a\": {}\n}|{\n\"b\": "
     "[\n1,\n{\n\"c\": []\n}\n],\n\"a\": {}\n}|{\n\t\"b\": [\n\t\t1,\n\t\t{\n\t\t\t\"c\": "
     "[]\n\t\t}\n\t],\n\t\"a\": {}\n}"},
    {"ToJsonOptions",
     "{{ data|tojson(ensure_ascii=true) }}|{{ data|tojson(sort_keys=true) }}|{{ "
     "data|tojson(separators=(',', ':')) }}|{{ 'x'|tojson }}|{{ none|tojson }}|{{ 3|tojson }}|{{ "
     "(1, 'a')|tojson }}",
     "{\"data\": {\"z\": \"\xc3\xa9"
     "\xf0\x9f\x98\x80"
     "\", \"a\": [1]}}",
     true,
     "{\"z\": \"\\u00e9\\ud83d\\ude00\", \"a\": [1]}|{\"a\": [1], \"z\": \"\xc3\xa9"
     "\xf0\x9f\x98\x80"
     "\"}|{\"z\":\"\xc3\xa9"
     "\xf0\x9f\x98\x80"
     "\",\"a\":[1]}|\"x\"|null|3|[1, \"a\"]"},
};

class FilterTest : public testing::TestWithParam<RenderCase> {};
TEST_P(FilterTest, RendersLikeJinja2) { jinja_test::ExpectRendersLikeJinja2(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Jinja2, FilterTest, testing::ValuesIn(kFilterCases), jinja_test::CaseName);

TEST(Filters, AreFoundByName) {
  for (const char* name :
       {"trim",       "tojson",      "length",    "count",    "upper",  "lower",  "capitalize",
        "title",      "replace",     "join",      "default",  "d",      "first",  "last",
        "list",       "items",       "string",    "int",      "float",  "safe",   "map",
        "selectattr", "rejectattr",  "select",    "reject",   "unique", "indent", "dictsort",
        "sort",       "min",         "max",       "sum",      "abs",    "round",  "batch",
        "slice",      "reverse",     "wordcount", "truncate", "center", "format", "escape",
        "e",          "forceescape", "attr"}) {
    EXPECT_NE(FindFilter(name), nullptr) << name;
  }
  EXPECT_EQ(FindFilter("nosuchfilter"), nullptr);
}

}  // namespace
}  // namespace yunzhi::engine::jinja
