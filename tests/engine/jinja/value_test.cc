// The value model's Python semantics: str()/repr() formatting, equality, ordering, truthiness.

#include "engine/jinja/value.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace yunzhi::engine::jinja {
namespace {

TEST(Value, FloatReprMatchesPython) {
  EXPECT_EQ(FloatRepr(1.0), "1.0");
  EXPECT_EQ(FloatRepr(0.1), "0.1");
  EXPECT_EQ(FloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FloatRepr(1e16), "1e+16");
  EXPECT_EQ(FloatRepr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(FloatRepr(0.0001), "0.0001");
  EXPECT_EQ(FloatRepr(0.00001), "1e-05");
  EXPECT_EQ(FloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(FloatRepr(2.5e300), "2.5e+300");
  EXPECT_EQ(FloatRepr(-3.25), "-3.25");
  EXPECT_EQ(FloatRepr(-0.0), "-0.0");
  EXPECT_EQ(FloatRepr(123456789.125), "123456789.125");
  EXPECT_EQ(FloatRepr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(FloatRepr(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(FloatRepr(std::nan("")), "nan");
}

TEST(Value, StringReprMatchesPython) {
  EXPECT_EQ(StringRepr("abc"), "'abc'");
  EXPECT_EQ(StringRepr("it's"), "\"it's\"");
  EXPECT_EQ(StringRepr("say \"hi\""), "'say \"hi\"'");
  EXPECT_EQ(StringRepr("both ' \""), "'both \\' \"'");
  EXPECT_EQ(StringRepr("tab\tnl\nback\\"), "'tab\\tnl\\nback\\\\'");
  EXPECT_EQ(StringRepr("\x01\x7f"), "'\\x01\\x7f'");
  EXPECT_EQ(StringRepr("中文😀"), "'中文😀'");
  EXPECT_EQ(StringRepr("\xc2\xa0\xe2\x80\xa8"), "'\\xa0\\u2028'");
  EXPECT_EQ(StringRepr("\xff"), "'\\udcff'");  // an undecodable byte
}

TEST(Value, StrOfContainersIsTheirRepr) {
  Dict d;
  d.Set("k", Value("v"));
  d.Set("n", Value::List({Value::None(), Value(true), Value(1.5)}));
  EXPECT_EQ(ToStr(Value::FromDict(d)), "{'k': 'v', 'n': [None, True, 1.5]}");
  EXPECT_EQ(ToStr(Value::Tuple({Value(1)})), "(1,)");
  EXPECT_EQ(ToStr(Value::Tuple({})), "()");
  EXPECT_EQ(ToStr(Value::Undefined("x")), "");
  EXPECT_EQ(Repr(Value::Undefined("x")), "Undefined");
  EXPECT_EQ(ToStr(Value("s")), "s");
  EXPECT_EQ(ToStr(Value(static_cast<int64_t>(-42))), "-42");
}

TEST(Value, EqualityFollowsPython) {
  EXPECT_TRUE(Equals(Value(1), Value(1.0)));
  EXPECT_TRUE(Equals(Value(true), Value(1)));
  EXPECT_FALSE(Equals(Value(1), Value("1")));
  EXPECT_FALSE(Equals(Value::List({Value(1)}), Value::Tuple({Value(1)})));
  EXPECT_TRUE(Equals(Value::Undefined("a"), Value::Undefined("b")));
  EXPECT_FALSE(Equals(Value::Undefined("a"), Value::None()));
  Dict a, b;
  a.Set("x", Value(1));
  a.Set("y", Value(2));
  b.Set("y", Value(2));
  b.Set("x", Value(1.0));
  EXPECT_TRUE(Equals(Value::FromDict(a), Value::FromDict(b)));  // order does not matter
}

TEST(Value, OrderingFailsAcrossTypes) {
  EXPECT_TRUE(LessThan(Value("a"), Value("b")));
  EXPECT_TRUE(LessThan(Value(1), Value(1.5)));
  EXPECT_TRUE(LessThan(Value::List({Value(1), Value(2)}), Value::List({Value(1), Value(3)})));
  try {
    LessThan(Value("a"), Value(1));
    ADD_FAILURE();
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.message(), "'<' not supported between instances of 'str' and 'int'");
  }
}

TEST(Value, TruthinessFollowsPython) {
  EXPECT_FALSE(Truthy(Value::Undefined("u")));
  EXPECT_FALSE(Truthy(Value::None()));
  EXPECT_FALSE(Truthy(Value(0)));
  EXPECT_FALSE(Truthy(Value(0.0)));
  EXPECT_FALSE(Truthy(Value("")));
  EXPECT_FALSE(Truthy(Value::List({})));
  EXPECT_FALSE(Truthy(Value::FromDict(Dict())));
  EXPECT_TRUE(Truthy(Value(" ")));
  EXPECT_TRUE(Truthy(Value(-1)));
}

TEST(Value, IteratesAndMeasuresLikePython) {
  EXPECT_EQ(Length(Value("héllo")), 5);
  ValueList chars = Iterate(Value("a中"));
  ASSERT_EQ(chars.size(), 2u);
  EXPECT_EQ(chars[1].as_string(), "中");
  EXPECT_TRUE(Iterate(Value::Undefined("u")).empty());
  EXPECT_THROW(Iterate(Value(3)), TemplateError);
  EXPECT_THROW(Length(Value::None()), TemplateError);
}

TEST(Dict, KeepsInsertionOrderAndReplacesInPlace) {
  Dict d;
  for (int i = 0; i < 40; ++i) d.Set("k" + std::to_string(i), Value(i));  // past the index size
  d.Set("k3", Value("three"));
  EXPECT_EQ(d.size(), 40u);
  EXPECT_EQ(d.entries()[3].first, "k3");
  EXPECT_EQ(d.Find("k3")->as_string(), "three");
  EXPECT_EQ(d.Find("k39")->as_int(), 39);
  EXPECT_EQ(d.Find("nope"), nullptr);
}

TEST(BindArgs, BindsLikePython) {
  CallArgs args;
  args.positional = {Value(1)};
  args.keyword = {{"c", Value(3)}};
  auto bound = BindArgs(args, "f", {"a", "b", "c"}, 1);
  EXPECT_EQ(bound[0]->as_int(), 1);
  EXPECT_FALSE(bound[1].has_value());
  EXPECT_EQ(bound[2]->as_int(), 3);
  args.keyword = {{"a", Value(2)}};
  EXPECT_THROW(BindArgs(args, "f", {"a"}), TemplateError);  // given twice
  args = CallArgs();
  EXPECT_THROW(BindArgs(args, "f", {"a"}, 1), TemplateError);  // missing
  args.keyword = {{"zz", Value(1)}};
  EXPECT_THROW(BindArgs(args, "f", {"a"}), TemplateError);  // unknown keyword
}

}  // namespace
}  // namespace yunzhi::engine::jinja
