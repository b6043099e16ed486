#include "engine/jinja/tests.h"

#include <algorithm>

#include "engine/jinja/evaluator.h"
#include "engine/jinja/filters.h"
#include "engine/jinja/operators.h"
#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {
namespace {

void NoArgs(const CallArgs& args, std::string_view name) { BindArgs(args, name, {}); }

const Value& OneArg(const CallArgs& args, std::string_view name,
                    std::vector<std::optional<Value>>* storage) {
  *storage = BindArgs(args, name, {"other"}, 1);
  return *(*storage)[0];
}

bool Remainder(Interpreter& interp, const Value& v, const Value& divisor, int64_t expected) {
  return Equals(BinaryOperation(interp, BinaryOp::kMod, v, divisor), Value(expected));
}

bool Odd(Interpreter& interp, const Value& v, CallArgs& args) {
  NoArgs(args, "odd");
  return Remainder(interp, v, Value(2), 1);
}
bool Even(Interpreter& interp, const Value& v, CallArgs& args) {
  NoArgs(args, "even");
  return Remainder(interp, v, Value(2), 0);
}
bool DivisibleBy(Interpreter& interp, const Value& v, CallArgs& args) {
  auto a = BindArgs(args, "divisibleby", {"num"}, 1);
  return Remainder(interp, v, *a[0], 0);
}
bool Defined(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "defined");
  return !v.is_undefined();
}
bool Undefined(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "undefined");
  return v.is_undefined();
}
bool None(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "none");
  return v.is_none();
}
bool Boolean(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "boolean");
  return v.is_bool();
}
bool False(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "false");
  return v.is_bool() && !v.as_bool();
}
bool True(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "true");
  return v.is_bool() && v.as_bool();
}
bool Integer(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "integer");
  return v.is_int();
}
bool Float(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "float");
  return v.is_float();
}
bool Number(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "number");
  return v.is_number();
}
bool String(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "string");
  return v.is_string();
}
bool Mapping(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "mapping");
  return v.is_dict();
}
// Jinja2: anything with len() and __getitem__ -- strings, lists, dicts and undefined.
bool Sequence(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "sequence");
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
// Jinja2: anything iter() accepts -- strings, lists, dicts, loops and undefined.
bool Iterable(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "iterable");
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
         (v.is_object() && v.as_object().TypeName() == "LoopContext");
}
bool CallableTest(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "callable");
  return v.is_callable() || v.is_undefined();  // Jinja2's Undefined defines __call__
}
bool Escaped(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "escaped");
  return false;  // no Markup strings: autoescaping is off in chat templates
}
bool Lower(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "lower");
  std::string s = ToStr(v);
  bool cased = false;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    if (utf8::IsUpper(cp)) return false;
    cased = cased || utf8::IsLower(cp);
  }
  return cased;
}
bool Upper(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "upper");
  std::string s = ToStr(v);
  bool cased = false;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    if (utf8::IsLower(cp)) return false;
    cased = cased || utf8::IsUpper(cp);
  }
  return cased;
}
// Python `is`: identity. Shared containers compare by address; scalars by kind and value (as
// CPython's singletons and small-int cache make `none is none`, `true is true`, `1 is 1` hold).
bool SameAs(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> storage;
  const Value& other = OneArg(args, "sameas", &storage);
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kList:
      return &v.as_list() == &other.as_list();
    case Value::Kind::kDict:
      return &v.as_dict() == &other.as_dict();
    case Value::Kind::kString:
      return &v.as_string() == &other.as_string();
    case Value::Kind::kFloat:
      return false;
    default:
      return Equals(v, other);
  }
}
bool In(Interpreter&, const Value& v, CallArgs& args) {
  auto a = BindArgs(args, "in", {"seq"}, 1);
  return Contains(*a[0], v);
}
bool FilterExists(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "filter");
  return v.is_string() && FindFilter(v.as_string()) != nullptr;
}
bool TestExists(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs(args, "test");
  return v.is_string() && FindTest(v.as_string()) != nullptr;
}

bool Eq(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return Equals(v, OneArg(args, "eq", &s));
}
bool Ne(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return !Equals(v, OneArg(args, "ne", &s));
}
bool Lt(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return Compare(v, OneArg(args, "lt", &s), "<");
}
bool Le(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return Compare(v, OneArg(args, "le", &s), "<=");
}
bool Gt(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return Compare(v, OneArg(args, "gt", &s), ">");
}
bool Ge(Interpreter&, const Value& v, CallArgs& args) {
  std::vector<std::optional<Value>> s;
  return Compare(v, OneArg(args, "ge", &s), ">=");
}

struct Entry {
  std::string_view name;
  TestFn fn;
};

constexpr Entry kTests[] = {
    {"!=", Ne},
    {"<", Lt},
    {"<=", Le},
    {"==", Eq},
    {">", Gt},
    {">=", Ge},
    {"boolean", Boolean},
    {"callable", CallableTest},
    {"defined", Defined},
    {"divisibleby", DivisibleBy},
    {"eq", Eq},
    {"equalto", Eq},
    {"escaped", Escaped},
    {"even", Even},
    {"false", False},
    {"filter", FilterExists},
    {"float", Float},
    {"ge", Ge},
    {"greaterthan", Gt},
    {"gt", Gt},
    {"in", In},
    {"integer", Integer},
    {"iterable", Iterable},
    {"le", Le},
    {"lessthan", Lt},
    {"lower", Lower},
    {"lt", Lt},
    {"mapping", Mapping},
    {"ne", Ne},
    {"none", None},
    {"number", Number},
    {"odd", Odd},
    {"sameas", SameAs},
    {"sequence", Sequence},
    {"string", String},
    {"test", TestExists},
    {"true", True},
    {"undefined", Undefined},
    {"upper", Upper},
};

}  // namespace

TestFn FindTest(std::string_view name) {
  for (const Entry& e : kTests) {
    if (e.name == name) return e.fn;
  }
  return nullptr;
}

}  // namespace yunzhi::engine::jinja
