// JSON in and out: TemplateValue::ParseJson / ToJson, and the json.dumps-compatible writer
// behind Hugging Face's `tojson`.

#include "engine/jinja/json.h"

#include <gtest/gtest.h>

#include "yunzhi/engine/template_value.h"

namespace yunzhi::engine::jinja {
namespace {

TEST(TemplateValueJson, ParsesAndKeepsOrderAndNumberKinds) {
  Result<TemplateValue> v = TemplateValue::ParseJson(
      R"( {"z": [1, -2.5, 3e2, 9223372036854775807, 9223372036854775808, true, null],
           "a": "x\u00e9\ud83d\ude00\n\"", "z2": {}, "e": []} )");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  const TemplateValue::Object& o = v->as_object();
  ASSERT_EQ(o.size(), 4u);
  EXPECT_EQ(o[0].first, "z");
  EXPECT_EQ(o[1].first, "a");
  const TemplateValue::Array& z = o[0].second.as_array();
  EXPECT_TRUE(z[0].is_int());
  EXPECT_TRUE(z[1].is_float());
  EXPECT_TRUE(z[2].is_float());
  EXPECT_EQ(z[3].as_int(), 9223372036854775807);
  EXPECT_TRUE(z[4].is_float());  // beyond int64
  EXPECT_EQ(o[1].second.as_string(), "x\xc3\xa9\xf0\x9f\x98\x80\n\"");
  EXPECT_EQ(v->ToJson(),
            "{\"z\": [1, -2.5, 300.0, 9223372036854775807, 9.223372036854776e+18, true, null], "
            "\"a\": \"xé😀\\n\\\"\", \"z2\": {}, \"e\": []}");
}

TEST(TemplateValueJson, DuplicateKeysKeepTheFirstPositionAndLastValue) {
  Result<TemplateValue> v = TemplateValue::ParseJson(R"({"a": 1, "b": 2, "a": 3})");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->ToJson(), "{\"a\": 3, \"b\": 2}");
}

TEST(TemplateValueJson, RejectsInvalidJsonWithTheOffset) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "tru", "[1] x", "\"a\nb\"",
                          "{'a': 1}", "1.", "-"}) {
    Result<TemplateValue> v = TemplateValue::ParseJson(bad);
    EXPECT_FALSE(v.has_value()) << bad;
    if (!v.has_value()) {
      EXPECT_EQ(v.error().code, Code::kInvalidArgument);
      EXPECT_NE(v.error().message.find("invalid JSON at byte"), std::string::npos);
    }
  }
  std::string deep(600, '[');
  EXPECT_FALSE(TemplateValue::ParseJson(deep + std::string(600, ']')).has_value());
}

TEST(TemplateValue, FindAndSet) {
  TemplateValue v = TemplateValue::Object{{"a", 1}};
  v.Set("b", "x");
  v.Set("a", 2);
  EXPECT_EQ(v.Find("a")->as_int(), 2);
  EXPECT_EQ(v.Find("b")->as_string(), "x");
  EXPECT_EQ(v.Find("c"), nullptr);
  EXPECT_EQ(TemplateValue(3).Find("a"), nullptr);
  EXPECT_EQ(v.as_object().front().first, "a");
}

Value Sample() {
  Dict inner;
  inner.Set("e", Value::FromDict(Dict()));
  inner.Set("l", Value::List({}));
  Dict d;
  d.Set("b",
        Value::List({Value(1), Value(2.5), Value("中\"\\\n\x01\x7f"), Value::None(), Value(true)}));
  d.Set("a", Value::FromDict(inner));
  return Value::FromDict(d);
}

TEST(JsonDumps, MatchesPythonJsonDumps) {
  // json.dumps(x, ensure_ascii=False)
  EXPECT_EQ(JsonDumps(Sample()),
            "{\"b\": [1, 2.5, \"中\\\"\\\\\\n\\u0001\x7f\", null, true], \"a\": {\"e\": {}, "
            "\"l\": []}}");
  JsonDumpOptions indent;
  indent.indent = "  ";
  EXPECT_EQ(JsonDumps(Sample(), indent),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"中\\\"\\\\\\n\\u0001\x7f\",\n    null,\n"
            "    true\n  ],\n  \"a\": {\n    \"e\": {},\n    \"l\": []\n  }\n}");
  JsonDumpOptions ascii;
  ascii.ensure_ascii = true;
  ascii.sort_keys = true;
  EXPECT_EQ(JsonDumps(Value::List({Value("é😀\x7f")}), ascii), "[\"\\u00e9\\ud83d\\ude00\\u007f\"]");
  JsonDumpOptions compact;
  compact.item_separator = ",";
  compact.key_separator = ":";
  compact.sort_keys = true;
  EXPECT_EQ(JsonDumps(Sample(), compact).substr(0, 13), "{\"a\":{\"e\":{},");
  EXPECT_THROW(JsonDumps(Value::Undefined("u")), TemplateError);
  EXPECT_EQ(JsonDumps(Value(-0.0)), "-0.0");
  EXPECT_EQ(JsonDumps(Value(1e16)), "1e+16");
}

}  // namespace
}  // namespace yunzhi::engine::jinja
