#include "engine/jinja/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "engine/jinja/evaluator.h"
#include "engine/jinja/json.h"
#include "engine/jinja/methods.h"
#include "engine/jinja/operators.h"
#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {
namespace {

using Bound = std::vector<std::optional<Value>>;

bool Flag(const std::optional<Value>& v) { return v && Truthy(*v); }

int64_t IntParam(const std::optional<Value>& v, int64_t fallback, std::string_view what) {
  if (!v) return fallback;
  if (v->is_undefined()) v->FailUndefined();
  if (!v->is_int() && !v->is_bool()) {
    Fail("'" + std::string(TypeName(*v)) + "' object cannot be interpreted as an integer (" +
         std::string(what) + ")");
  }
  return v->IntValue();
}

// Jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0 (item-first lookups).
Value GetPath(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return GetItem(item, attribute);
  Value current = item;
  std::string_view path = attribute.as_string();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string_view part = path.substr(start, dot == std::string_view::npos ? dot : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(),
                                               [](char c) { return c >= '0' && c <= '9'; });
    current = digits ? GetItem(current, Value(static_cast<int64_t>(std::stoll(std::string(part)))))
                     : GetItem(current, Value(part));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return current;
}

// Jinja2's ignore_case postprocessing for sort keys.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(utf8::Lower(v.as_string()));
  return v;
}

bool KeyLess(const Value& a, const Value& b) { return LessThan(a, b, "<"); }

// ---- string filters ----

Value Upper(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "upper", {});
  return Value(utf8::Upper(ToStr(in)));
}

Value Lower(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "lower", {});
  return Value(utf8::Lower(ToStr(in)));
}

Value Capitalize(Interpreter& interp, const Value& in, CallArgs& args) {
  BindArgs(args, "capitalize", {});
  CallArgs none;
  return interp.CallValue(GetAttribute(Value(ToStr(in)), "capitalize"), none);
}

// Jinja2's title: words start after whitespace, '-', '(', '{', '[' or '<'.
Value Title(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "title", {});
  std::string s = ToStr(in);
  std::string out;
  bool word_start = true;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    bool separator =
        utf8::IsSpace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (separator) {
      utf8::Append(cp, &out);
      word_start = true;
    } else {
      utf8::Append(word_start ? utf8::ToUpper(cp) : utf8::ToLower(cp), &out);
      word_start = false;
    }
  }
  return Value(std::move(out));
}

Value Trim(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "trim", {"chars"});
  std::string s = ToStr(in);
  if (!a[0] || a[0]->is_none()) return Value(utf8::StripSpace(s, true, true));
  if (!a[0]->is_string()) Fail("strip arg must be None or str");
  return Value(utf8::StripChars(s, a[0]->as_string(), true, true));
}

Value Replace(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "replace", {"old", "new", "count"}, 2);
  CallArgs call;
  call.positional = {Value(ToStr(*a[0])), Value(ToStr(*a[1]))};
  if (a[2] && !a[2]->is_none()) call.positional.push_back(*a[2]);
  return interp.CallValue(GetAttribute(Value(ToStr(in)), "replace"), call);
}

Value StringFilter(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "string", {});
  return Value(ToStr(in));
}

Value Safe(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "safe", {});
  return Value::Markup(ToStr(in));
}

Value Escape(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "escape", {});
  if (in.is_markup()) return in;
  return Value::Markup(HtmlEscape(ToStr(in)));
}

Value ForceEscape(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "forceescape", {});
  return Value::Markup(HtmlEscape(ToStr(in)));
}

Value Indent(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "indent", {"width", "first", "blank"});
  if (in.is_undefined()) in.FailUndefined();
  if (!in.is_string()) {
    Fail("unsupported operand type(s) for +=: '" + std::string(TypeName(in)) + "' and 'str'");
  }
  std::string indention;
  if (a[0] && a[0]->is_string()) {
    indention = a[0]->as_string();
  } else {
    int64_t width = IntParam(a[0], 4, "indent width");
    indention.assign(static_cast<size_t>(std::clamp<int64_t>(width, 0, 1 << 20)), ' ');
  }
  CallArgs none;
  Value lines_value =
      interp.CallValue(GetAttribute(Value(in.as_string() + "\n"), "splitlines"), none);
  const ValueList& lines = lines_value.as_list();
  std::string out;
  if (Flag(a[2])) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i].as_string();
    }
  } else {
    out = lines.empty() ? "" : lines[0].as_string();
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].as_string().empty()) out += indention;
      out += lines[i].as_string();
    }
  }
  if (Flag(a[1])) out = indention + out;
  interp.ChargeString(out.size());
  return Value(std::move(out));
}

Value Center(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "center", {"width"});
  CallArgs call;
  call.positional = {Value(IntParam(a[0], 80, "width"))};
  return interp.CallValue(GetAttribute(Value(ToStr(in)), "center"), call);
}

Value Truncate(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "truncate", {"length", "killwords", "end", "leeway"});
  int64_t length = IntParam(a[0], 255, "length");
  std::string end = a[2] ? ToStr(*a[2]) : "...";
  int64_t leeway = a[3] && !a[3]->is_none() ? IntParam(a[3], 5, "leeway") : 5;
  auto end_len = static_cast<int64_t>(utf8::Length(end));
  if (length < end_len) Fail("expected length >= " + std::to_string(end_len));
  if (leeway < 0) Fail("expected leeway >= 0");
  // Jinja2 measures the value itself: short lists pass through, numbers have no len().
  if (!in.is_string()) {
    if (jinja::Length(in) <= length + leeway) return in;
    Fail("truncate needs a string, not '" + std::string(TypeName(in)) + "'");
  }
  const std::string& s = in.as_string();
  std::vector<uint32_t> cps = utf8::ToCodePoints(s);
  if (static_cast<int64_t>(cps.size()) <= length + leeway) return in;
  std::vector<uint32_t> head(cps.begin(), cps.begin() + (length - end_len));
  std::string result = utf8::FromCodePoints(head);
  if (!Flag(a[1])) {
    size_t space = result.rfind(' ');
    if (space != std::string::npos) result.resize(space);
  }
  return Value(result + end);
}

Value WordCount(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "wordcount", {});
  std::string s = ToStr(in);
  int64_t words = 0;
  bool in_word = false;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    bool word_char = utf8::IsAlpha(cp) || utf8::IsDigit(cp) || cp == '_';
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value(words);
}

Value Format(Interpreter& interp, const Value& in, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    Fail("can't handle positional and keyword arguments at the same time");
  }
  Value format_args;
  if (!args.keyword.empty()) {
    Dict d;
    for (auto& [key, value] : args.keyword) d.Set(key, value);
    format_args = Value::FromDict(std::move(d));
  } else {
    format_args = Value::Tuple(args.positional);
  }
  return Value(PercentFormat(interp, ToStr(in), format_args));
}

// ---- sequence filters ----

Value Length(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "length", {});
  return Value(jinja::Length(in));
}

Value List(Interpreter& interp, const Value& in, CallArgs& args) {
  BindArgs(args, "list", {});
  ValueList items = Iterate(in);
  interp.ChargeList(items.size());
  return Value::List(std::move(items));
}

Value First(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "first", {});
  if (in.is_list()) {
    if (in.as_list().empty()) return Value::Undefined("No first item, sequence was empty.");
    return in.as_list().front();
  }
  ValueList items = Iterate(in);
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

Value Last(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "last", {});
  if (in.is_list()) {
    if (in.as_list().empty()) return Value::Undefined("No last item, sequence was empty.");
    return in.as_list().back();
  }
  if (!in.is_string() && !in.is_dict() && !in.is_undefined()) {
    Fail("'" + std::string(TypeName(in)) + "' object is not reversible");
  }
  ValueList items = Iterate(in);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value Reverse(Interpreter& interp, const Value& in, CallArgs& args) {
  BindArgs(args, "reverse", {});
  if (in.is_string()) {
    std::vector<uint32_t> cps = utf8::ToCodePoints(in.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value(utf8::FromCodePoints(cps));
  }
  ValueList items = Iterate(in);
  std::reverse(items.begin(), items.end());
  interp.ChargeList(items.size());
  return Value::List(std::move(items));
}

Value Join(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "join", {"d", "attribute"});
  std::string sep = a[0] ? ToStr(*a[0]) : "";
  ValueList items = Iterate(in);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    AppendStr(a[1] && !a[1]->is_none() ? GetPath(items[i], *a[1]) : items[i], &out);
    interp.ChargeString(out.size());
  }
  return Value(std::move(out));
}

Value Default(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "default", {"default_value", "boolean"});
  if (in.is_undefined() || (Flag(a[1]) && !Truthy(in))) return a[0] ? *a[0] : Value("");
  return in;
}

Value Items(Interpreter& interp, const Value& in, CallArgs& args) {
  BindArgs(args, "items", {});
  if (in.is_undefined()) return Value::List({});
  if (!in.is_dict()) Fail("Can only get item pairs from a mapping.");
  ValueList pairs;
  for (const auto& [key, value] : in.as_dict().entries()) {
    pairs.push_back(Value::Tuple({Value(key), value}));
  }
  interp.ChargeList(pairs.size());
  return Value::List(std::move(pairs));
}

Value DictSort(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "dictsort", {"case_sensitive", "by", "reverse"});
  if (in.is_undefined()) in.FailUndefined();
  if (!in.is_dict()) Fail("'" + std::string(TypeName(in)) + "' object has no attribute 'items'");
  bool case_sensitive = Flag(a[0]);
  size_t pos = 0;
  if (a[1]) {
    std::string by = ToStr(*a[1]);
    if (by == "value") {
      pos = 1;
    } else if (by != "key") {
      Fail("You can only sort by either \"key\" or \"value\"");
    }
  }
  ValueList pairs;
  for (const auto& [key, value] : in.as_dict().entries()) {
    pairs.push_back(Value::Tuple({Value(key), value}));
  }
  interp.ChargeList(pairs.size());
  bool reverse = Flag(a[2]);
  std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
    Value kx = SortKey(x.as_list()[pos], case_sensitive);
    Value ky = SortKey(y.as_list()[pos], case_sensitive);
    return reverse ? KeyLess(ky, kx) : KeyLess(kx, ky);
  });
  return Value::List(std::move(pairs));
}

// Sort keys for sort/min/max/unique: `attribute` may name several comma-separated paths.
Value ItemKey(const Value& item, const std::optional<Value>& attribute, bool case_sensitive,
              bool multi) {
  if (!attribute || attribute->is_none()) return SortKey(item, case_sensitive);
  if (multi && attribute->is_string() && attribute->as_string().find(',') != std::string::npos) {
    ValueList keys;
    std::string_view attrs = attribute->as_string();
    size_t start = 0;
    while (true) {
      size_t comma = attrs.find(',', start);
      keys.push_back(SortKey(
          GetPath(item, Value(attrs.substr(
                            start, comma == std::string_view::npos ? comma : comma - start))),
          case_sensitive));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return Value::List(std::move(keys));
  }
  return SortKey(GetPath(item, *attribute), case_sensitive);
}

Value Sort(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "sort", {"reverse", "case_sensitive", "attribute"});
  ValueList items = Iterate(in);
  interp.ChargeList(items.size());
  bool reverse = Flag(a[0]);
  bool case_sensitive = Flag(a[1]);
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& item : items) {
    Value key = ItemKey(item, a[2], case_sensitive, true);
    keyed.emplace_back(std::move(key), std::move(item));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
    return reverse ? KeyLess(y.first, x.first) : KeyLess(x.first, y.first);
  });
  ValueList out;
  out.reserve(keyed.size());
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::List(std::move(out));
}

Value Unique(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "unique", {"case_sensitive", "attribute"});
  ValueList items = Iterate(in);
  bool case_sensitive = Flag(a[0]);
  ValueList out, seen;
  for (Value& item : items) {
    Value key = ItemKey(item, a[1], case_sensitive, false);
    if (!IsHashable(key)) Fail("unhashable type: '" + std::string(TypeName(key)) + "'");
    interp.Charge(static_cast<int64_t>(seen.size()) / 16 + 1);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      seen.push_back(std::move(key));
      out.push_back(std::move(item));
    }
  }
  return Value::List(std::move(out));
}

Value MinMax(const Value& in, CallArgs& args, bool max) {
  Bound a = BindArgs(args, max ? "max" : "min", {"case_sensitive", "attribute"});
  ValueList items = Iterate(in);
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  bool case_sensitive = Flag(a[0]);
  size_t best = 0;
  Value best_key = ItemKey(items[0], a[1], case_sensitive, false);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = ItemKey(items[i], a[1], case_sensitive, false);
    if (max ? KeyLess(best_key, key) : KeyLess(key, best_key)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}
Value Max(Interpreter&, const Value& in, CallArgs& args) { return MinMax(in, args, true); }
Value Min(Interpreter&, const Value& in, CallArgs& args) { return MinMax(in, args, false); }

Value Sum(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "sum", {"attribute", "start"});
  Value total = a[1] ? *a[1] : Value(static_cast<int64_t>(0));
  for (const Value& item : Iterate(in)) {
    total = BinaryOperation(interp, BinaryOp::kAdd, total,
                            a[0] && !a[0]->is_none() ? GetPath(item, *a[0]) : item);
  }
  return total;
}

Value Batch(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "batch", {"linecount", "fill_with"}, 1);
  int64_t count = IntParam(a[0], 1, "linecount");
  if (count <= 0) Fail("batch size must be positive");
  ValueList items = Iterate(in);
  ValueList out, row;
  for (Value& item : items) {
    row.push_back(std::move(item));
    if (static_cast<int64_t>(row.size()) == count) {
      out.push_back(Value::List(std::move(row)));
      row.clear();
    }
  }
  if (!row.empty()) {
    if (a[1] && !a[1]->is_none()) {
      while (static_cast<int64_t>(row.size()) < count) row.push_back(*a[1]);
    }
    out.push_back(Value::List(std::move(row)));
  }
  interp.ChargeList(items.size());
  return Value::List(std::move(out));
}

Value SliceFilter(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "slice", {"slices", "fill_with"}, 1);
  int64_t slices = IntParam(a[0], 1, "slices");
  if (slices <= 0) Fail("slices must be positive");
  ValueList seq = Iterate(in);
  auto length = static_cast<int64_t>(seq.size());
  int64_t items_per_slice = length / slices;
  int64_t slices_with_extra = length % slices;
  int64_t offset = 0;
  ValueList out;
  for (int64_t i = 0; i < slices; ++i) {
    int64_t start = offset + i * items_per_slice;
    if (i < slices_with_extra) ++offset;
    int64_t end = offset + (i + 1) * items_per_slice;
    ValueList part(seq.begin() + start, seq.begin() + end);
    if (a[1] && !a[1]->is_none() && i >= slices_with_extra) part.push_back(*a[1]);
    out.push_back(Value::List(std::move(part)));
  }
  interp.ChargeList(seq.size() + static_cast<size_t>(slices));
  return Value::List(std::move(out));
}

// map(attribute=...) / map('filter', args...)
Value Map(Interpreter& interp, const Value& in, CallArgs& args) {
  if (!Truthy(in)) return Value::List({});
  ValueList items = Iterate(in);
  ValueList out;
  out.reserve(items.size());
  auto attribute = std::find_if(args.keyword.begin(), args.keyword.end(),
                                [](const auto& kv) { return kv.first == "attribute"; });
  if (args.positional.empty() && attribute != args.keyword.end()) {
    std::optional<Value> fallback;
    for (const auto& [key, value] : args.keyword) {
      if (key == "default") {
        fallback = value;
      } else if (key != "attribute") {
        Fail("Unexpected keyword argument '" + key + "'");
      }
    }
    for (const Value& item : items) {
      Value v = GetPath(item, attribute->second);
      if (v.is_undefined() && fallback && !fallback->is_none()) v = *fallback;
      out.push_back(std::move(v));
    }
  } else {
    if (args.positional.empty()) Fail("map requires a filter argument");
    std::string name = ToStr(args.positional[0]);
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.keyword = args.keyword;
    for (const Value& item : items) {
      CallArgs call = rest;
      out.push_back(interp.ApplyFilter(name, item, call));
    }
  }
  interp.ChargeList(out.size());
  return Value::List(std::move(out));
}

// select / reject / selectattr / rejectattr
Value SelectOrReject(Interpreter& interp, const Value& in, CallArgs& args, bool select,
                     bool by_attribute) {
  if (!Truthy(in)) return Value::List({});
  size_t off = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) Fail("Missing parameter for attribute name");
    attribute = args.positional[0];
    off = 1;
  }
  std::optional<std::string> test;
  CallArgs test_args;
  if (args.positional.size() > off) {
    test = ToStr(args.positional[off]);
    test_args.positional.assign(args.positional.begin() + static_cast<long>(off) + 1,
                                args.positional.end());
    test_args.keyword = args.keyword;
  }
  ValueList out;
  for (const Value& item : Iterate(in)) {
    Value subject = by_attribute ? GetPath(item, attribute) : item;
    bool passed;
    if (test) {
      CallArgs call = test_args;
      passed = interp.ApplyTest(*test, subject, call);
    } else {
      passed = Truthy(subject);
    }
    if (passed == select) out.push_back(item);
  }
  interp.ChargeList(out.size());
  return Value::List(std::move(out));
}
Value Select(Interpreter& interp, const Value& in, CallArgs& args) {
  return SelectOrReject(interp, in, args, true, false);
}
Value Reject(Interpreter& interp, const Value& in, CallArgs& args) {
  return SelectOrReject(interp, in, args, false, false);
}
Value SelectAttr(Interpreter& interp, const Value& in, CallArgs& args) {
  return SelectOrReject(interp, in, args, true, true);
}
Value RejectAttr(Interpreter& interp, const Value& in, CallArgs& args) {
  return SelectOrReject(interp, in, args, false, true);
}

Value Attr(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "attr", {"name"}, 1);
  if (in.is_undefined()) in.FailUndefined();
  std::string name = ToStr(*a[0]);
  if (in.is_dict()) {
    // Python attributes of a dict are its methods, never its keys.
    Value v = GetAttribute(in, name);
    if (v.is_callable()) return v;
    return Value::Undefined("'dict object' has no attribute '" + name + "'");
  }
  return GetAttribute(in, name);
}

// ---- numbers ----

// Python's int(str, base): optional whitespace and sign, digits with single underscores,
// a 0x/0o/0b prefix when base is 0 or matches.
std::optional<int64_t> ParsePythonInt(std::string_view text, int64_t base) {
  std::string_view s = utf8::StripSpace(text, true, true);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    int64_t prefix_base = p == 'x' ? 16 : (p == 'o' ? 8 : (p == 'b' ? 2 : 0));
    if (prefix_base != 0 && (base == 0 || base == prefix_base)) {
      base = prefix_base;
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (base == 0) base = 10;
  if (s.empty() || base < 2 || base > 36) return std::nullopt;
  int64_t value = 0;
  bool last_underscore = true;
  for (char c : s) {
    if (c == '_') {
      if (last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'z') ? c - 'a' + 10
            : (c >= 'A' && c <= 'Z') ? c - 'A' + 10
                                     : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(value, base, &value) || __builtin_add_overflow(value, d, &value)) {
      return std::nullopt;
    }
    last_underscore = false;
  }
  if (last_underscore) return std::nullopt;
  return negative ? -value : value;
}

// Python's float(str).
std::optional<double> ParsePythonFloat(std::string_view text) {
  std::string s(utf8::StripSpace(text, true, true));
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      bool ok = i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
                std::isdigit(static_cast<unsigned char>(s[i + 1]));
      if (!ok) return std::nullopt;
      continue;
    }
    cleaned += s[i];
  }
  if (cleaned.empty()) return std::nullopt;
  std::string lower = utf8::Lower(cleaned);
  std::string_view body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  if (body == "inf" || body == "infinity" || body == "nan") {
    return std::strtod(cleaned.c_str(), nullptr);
  }
  for (char c : body) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' ||
          c == '-')) {
      return std::nullopt;
    }
  }
  char* end = nullptr;
  double v = std::strtod(cleaned.c_str(), &end);
  if (end != cleaned.c_str() + cleaned.size()) return std::nullopt;
  return v;
}

Value Int(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "int", {"default", "base"});
  Value fallback = a[0] ? *a[0] : Value(static_cast<int64_t>(0));
  if (in.is_undefined()) in.FailUndefined();
  if (in.is_int() || in.is_bool()) return Value(in.IntValue());
  if (in.is_float()) {
    double f = in.as_float();
    if (std::isnan(f) || std::isinf(f)) return fallback;
    if (std::fabs(f) >= 9.2e18) Fail("integer overflow (the result does not fit in 64 bits)");
    return Value(static_cast<int64_t>(std::trunc(f)));
  }
  if (in.is_string()) {
    if (auto v = ParsePythonInt(in.as_string(), IntParam(a[1], 10, "base"))) return Value(*v);
    if (auto f = ParsePythonFloat(in.as_string());
        f && std::isfinite(*f) && std::fabs(*f) < 9.2e18) {
      return Value(static_cast<int64_t>(std::trunc(*f)));
    }
  }
  return fallback;
}

Value Float(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "float", {"default"});
  Value fallback = a[0] ? *a[0] : Value(0.0);
  if (in.is_undefined()) in.FailUndefined();
  if (in.is_number()) return Value(in.FloatValue());
  if (in.is_string()) {
    if (auto f = ParsePythonFloat(in.as_string())) return Value(*f);
  }
  return fallback;
}

Value Abs(Interpreter&, const Value& in, CallArgs& args) {
  BindArgs(args, "abs", {});
  if (in.is_undefined()) in.FailUndefined();
  if (in.is_int() || in.is_bool()) {
    if (in.IntValue() == INT64_MIN) Fail("integer overflow (the result does not fit in 64 bits)");
    return Value(in.IntValue() < 0 ? -in.IntValue() : in.IntValue());
  }
  if (in.is_float()) return Value(std::fabs(in.as_float()));
  Fail("bad operand type for abs(): '" + std::string(TypeName(in)) + "'");
}

// Python's round(x, ndigits) for floats: correctly rounded, ties to even.
double PythonRound(double x, int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits > 300) return x;
  if (ndigits >= 0) {
    char buf[400];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(ndigits), x);
    return std::strtod(buf, nullptr);
  }
  if (ndigits < -308) return std::copysign(0.0, x);
  double scale = std::pow(10.0, static_cast<double>(-ndigits));
  double y = x / scale;
  double r = std::nearbyint(y);  // default rounding mode: ties to even
  return r * scale;
}

Value Round(Interpreter&, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "round", {"precision", "method"});
  int64_t precision = IntParam(a[0], 0, "precision");
  std::string method = a[1] ? ToStr(*a[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    Fail("method must be common, ceil or floor");
  }
  if (in.is_undefined()) in.FailUndefined();
  if (!in.is_number())
    Fail("type " + std::string(TypeName(in)) + " doesn't define __round__ method");
  if (method == "common") {
    if (!in.is_float()) {
      if (precision >= 0) return Value(in.IntValue());
      double r = PythonRound(static_cast<double>(in.IntValue()), precision);
      return Value(static_cast<int64_t>(r));
    }
    return Value(PythonRound(in.as_float(), precision));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double v = in.FloatValue() * scale;
  v = method == "ceil" ? std::ceil(v) : std::floor(v);
  return Value(v / scale);
}

// ---- tojson (Hugging Face's override) ----

Value ToJson(Interpreter& interp, const Value& in, CallArgs& args) {
  Bound a = BindArgs(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions options;
  options.ensure_ascii = Flag(a[0]);
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_string()) {
      options.indent = a[1]->as_string();
    } else if (a[1]->is_int() || a[1]->is_bool()) {
      options.indent =
          std::string(static_cast<size_t>(std::clamp<int64_t>(a[1]->IntValue(), 0, 1024)), ' ');
    } else {
      Fail("indent must be an int or a string");
    }
  }
  if (a[2] && !a[2]->is_none()) {
    if (!a[2]->is_list() || a[2]->as_list().size() != 2 || !a[2]->as_list()[0].is_string() ||
        !a[2]->as_list()[1].is_string()) {
      Fail("separators must be a pair of strings");
    }
    options.item_separator = a[2]->as_list()[0].as_string();
    options.key_separator = a[2]->as_list()[1].as_string();
  }
  options.sort_keys = Flag(a[3]);
  std::string out = JsonDumps(in, options);
  interp.ChargeString(out.size());
  return Value(std::move(out));
}

struct Entry {
  std::string_view name;
  FilterFn fn;
};

constexpr Entry kFilters[] = {
    {"abs", Abs},
    {"attr", Attr},
    {"batch", Batch},
    {"capitalize", Capitalize},
    {"center", Center},
    {"count", Length},
    {"d", Default},
    {"default", Default},
    {"dictsort", DictSort},
    {"e", Escape},
    {"escape", Escape},
    {"first", First},
    {"float", Float},
    {"forceescape", ForceEscape},
    {"format", Format},
    {"indent", Indent},
    {"int", Int},
    {"items", Items},
    {"join", Join},
    {"last", Last},
    {"length", Length},
    {"list", List},
    {"lower", Lower},
    {"map", Map},
    {"max", Max},
    {"min", Min},
    {"reject", Reject},
    {"rejectattr", RejectAttr},
    {"replace", Replace},
    {"reverse", Reverse},
    {"round", Round},
    {"safe", Safe},
    {"select", Select},
    {"selectattr", SelectAttr},
    {"slice", SliceFilter},
    {"sort", Sort},
    {"string", StringFilter},
    {"sum", Sum},
    {"title", Title},
    {"tojson", ToJson},
    {"trim", Trim},
    {"truncate", Truncate},
    {"unique", Unique},
    {"upper", Upper},
    {"wordcount", WordCount},
};

}  // namespace

FilterFn FindFilter(std::string_view name) {
  for (const Entry& e : kFilters) {
    if (e.name == name) return e.fn;
  }
  return nullptr;
}

}  // namespace yunzhi::engine::jinja
