#include "engine/jinja/globals.h"

#include <ctime>
#include <memory>

#include "engine/jinja/json.h"

namespace yunzhi::engine::jinja {
namespace {

constexpr int64_t kMaxRange = 100'000;  // Jinja2's sandbox MAX_RANGE

// A Jinja2 namespace(): the one mutable object templates can make.
class Namespace : public Object {
 public:
  explicit Namespace(Dict attrs) : attrs_(std::move(attrs)) {}

  std::string_view TypeName() const override { return "Namespace"; }
  Value GetAttr(std::string_view name) const override {
    if (const Value* v = attrs_.Find(name)) return *v;
    return Value::Undefined("'Namespace' object has no attribute '" + std::string(name) + "'");
  }
  bool SetAttr(std::string_view name, Value value) override {
    attrs_.Set(std::string(name), std::move(value));
    return true;
  }
  std::string Repr() const override {
    return "<Namespace " + jinja::Repr(Value::FromDict(attrs_)) + ">";
  }
  void Clear() override { attrs_ = Dict(); }

 private:
  Dict attrs_;
};

// A builtin function: a name and a plain function pointer.
class Builtin : public Callable {
 public:
  using Fn = Value (*)(Interpreter& interp, CallArgs& args);
  Builtin(std::string_view name, Fn fn) : name_(name), fn_(fn) {}
  Value Call(Interpreter& interp, CallArgs& args) const override { return fn_(interp, args); }
  std::string Repr() const override { return "<built-in function " + std::string(name_) + ">"; }

 private:
  std::string_view name_;
  Fn fn_;
};

int64_t ToInteger(const Value& v, std::string_view what) {
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_int() && !v.is_bool()) {
    Fail("'" + std::string(TypeName(v)) + "' object cannot be interpreted as an integer (" +
         std::string(what) + ")");
  }
  return v.IntValue();
}

Value Range(Interpreter& interp, CallArgs& args) {
  if (!args.keyword.empty()) Fail("range() takes no keyword arguments");
  const ValueList& p = args.positional;
  if (p.empty() || p.size() > 3) {
    Fail("range expected 1 to 3 arguments, got " + std::to_string(p.size()));
  }
  int64_t start = 0, stop = 0, step = 1;
  if (p.size() == 1) {
    stop = ToInteger(p[0], "range");
  } else {
    start = ToInteger(p[0], "range");
    stop = ToInteger(p[1], "range");
    if (p.size() == 3) step = ToInteger(p[2], "range");
  }
  if (step == 0) Fail("range() arg 3 must not be zero");
  // Count without overflow: the number of values in [start, stop) with this step.
  __int128 span =
      step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
  __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
  if (count > kMaxRange) {
    Fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  interp.ChargeList(static_cast<size_t>(count));
  ValueList items;
  items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i) {
    items.emplace_back(static_cast<int64_t>(start + i * step));
  }
  return Value::List(std::move(items));
}

// Python's dict(mapping_or_pairs, **kwargs).
Dict MakeDict(const CallArgs& args, std::string_view callee) {
  Dict dict;
  if (args.positional.size() > 1) {
    Fail(std::string(callee) + " expected at most 1 positional argument, got " +
         std::to_string(args.positional.size()));
  }
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_undefined()) source.FailUndefined();  // Python looks up source.keys
    if (source.is_dict()) {
      dict = source.as_dict();
    } else {
      for (const Value& pair : Iterate(source)) {
        ValueList kv = Iterate(pair);
        if (kv.size() != 2) Fail("dictionary update sequence element has the wrong length");
        if (!kv[0].is_string()) Fail("only string keys are supported in dicts");
        dict.Set(kv[0].as_string(), kv[1]);
      }
    }
  }
  for (const auto& [key, value] : args.keyword) dict.Set(key, value);
  return dict;
}

Value MakeNamespace(Interpreter& interp, CallArgs& args) {
  auto ns = std::make_shared<Namespace>(MakeDict(args, "namespace"));
  interp.Track(ns);
  return Value::FromObject(std::move(ns));
}

Value MakeDictValue(Interpreter& interp, CallArgs& args) {
  Dict dict = MakeDict(args, "dict");
  interp.ChargeList(dict.size());
  return Value::FromDict(std::move(dict));
}

class Joiner : public Callable {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  Value Call(Interpreter&, CallArgs& args) const override {
    if (!args.positional.empty() || !args.keyword.empty()) Fail("joiner() takes no arguments");
    if (!used_) {
      used_ = true;
      return Value("");
    }
    return Value(sep_);
  }
  std::string Repr() const override { return "<jinja2.utils.Joiner object>"; }

 private:
  std::string sep_;
  mutable bool used_ = false;  // one render, one thread
};

Value MakeJoiner(Interpreter&, CallArgs& args) {
  auto bound = BindArgs(args, "joiner", {"sep"});
  std::string sep = bound[0] ? ToStr(*bound[0]) : ", ";
  return Value::FromCallable(std::make_shared<Joiner>(std::move(sep)));
}

Value RaiseException(Interpreter&, CallArgs& args) {
  auto bound = BindArgs(args, "raise_exception", {"message"}, 1);
  throw TemplateError(TemplateError::Kind::kRaised, ToStr(*bound[0]));
}

Value StrftimeNow(Interpreter& interp, CallArgs& args) {
  auto bound = BindArgs(args, "strftime_now", {"format"}, 1);
  if (!bound[0]->is_string()) Fail("strftime() argument 1 must be str");
  return Value(FormatTime(bound[0]->as_string(), interp.now()));
}

constexpr const char* kDayNames[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                     "Thursday", "Friday", "Saturday"};
constexpr const char* kMonthNames[] = {"January",   "February", "March",    "April",
                                       "May",       "June",     "July",     "August",
                                       "September", "October",  "November", "December"};

// ISO 8601 week-based year and week number.
void IsoWeek(const std::tm& tm, int* iso_year, int* iso_week) {
  int wday = (tm.tm_wday + 6) % 7;  // Monday = 0
  int year = tm.tm_year + 1900;
  int week = (tm.tm_yday - wday + 10) / 7;
  auto weeks_in = [](int y) {
    auto p = [](int y2) { return (y2 + y2 / 4 - y2 / 100 + y2 / 400) % 7; };
    return (p(y) == 4 || p(y - 1) == 3) ? 53 : 52;
  };
  if (week < 1) {
    --year;
    week = weeks_in(year);
  } else if (week > weeks_in(year)) {
    ++year;
    week = 1;
  }
  *iso_year = year;
  *iso_week = week;
}

}  // namespace

std::string FormatTime(std::string_view format, std::chrono::system_clock::time_point time) {
  std::time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) {
      out.push_back('%');
      break;
    }
    char pad = 0;  // 0: default, '-': none, '_': spaces
    if (format[i] == '-' || format[i] == '_') {
      pad = format[i];
      if (++i >= format.size()) Fail("strftime format ends inside a directive");
    }
    auto number = [&](long value, int width, char default_fill) {
      std::string digits = std::to_string(value);
      char fill = pad == '_' ? ' ' : default_fill;
      if (pad != '-' && static_cast<int>(digits.size()) < width) {
        out.append(static_cast<size_t>(width) - digits.size(), fill);
      }
      out += digits;
    };
    int hour12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
    switch (format[i]) {
      case 'a':
        out.append(kDayNames[tm.tm_wday], 3);
        break;
      case 'A':
        out += kDayNames[tm.tm_wday];
        break;
      case 'b':
      case 'h':
        out.append(kMonthNames[tm.tm_mon], 3);
        break;
      case 'B':
        out += kMonthNames[tm.tm_mon];
        break;
      case 'c':
        out += FormatTime("%a %b %e %H:%M:%S %Y", time);
        break;
      case 'C':
        number((tm.tm_year + 1900) / 100, 2, '0');
        break;
      case 'd':
        number(tm.tm_mday, 2, '0');
        break;
      case 'D':
      case 'x':
        out += FormatTime("%m/%d/%y", time);
        break;
      case 'e':
        number(tm.tm_mday, 2, ' ');
        break;
      case 'F':
        out += FormatTime("%Y-%m-%d", time);
        break;
      case 'g':
      case 'G':
      case 'V': {
        int iso_year = 0, iso_week = 0;
        IsoWeek(tm, &iso_year, &iso_week);
        if (format[i] == 'G') number(iso_year, 1, '0');
        if (format[i] == 'g') number(iso_year % 100, 2, '0');
        if (format[i] == 'V') number(iso_week, 2, '0');
        break;
      }
      case 'H':
        number(tm.tm_hour, 2, '0');
        break;
      case 'I':
        number(hour12, 2, '0');
        break;
      case 'j':
        number(tm.tm_yday + 1, 3, '0');
        break;
      case 'k':
        number(tm.tm_hour, 2, ' ');
        break;
      case 'l':
        number(hour12, 2, ' ');
        break;
      case 'm':
        number(tm.tm_mon + 1, 2, '0');
        break;
      case 'M':
        number(tm.tm_min, 2, '0');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'p':
        out += tm.tm_hour < 12 ? "AM" : "PM";
        break;
      case 'P':
        out += tm.tm_hour < 12 ? "am" : "pm";
        break;
      case 'r':
        out += FormatTime("%I:%M:%S %p", time);
        break;
      case 'R':
        out += FormatTime("%H:%M", time);
        break;
      case 's':
        out += std::to_string(static_cast<long long>(t));
        break;
      case 'S':
        number(tm.tm_sec, 2, '0');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'T':
      case 'X':
        out += FormatTime("%H:%M:%S", time);
        break;
      case 'u':
        number(tm.tm_wday == 0 ? 7 : tm.tm_wday, 1, '0');
        break;
      case 'U':
        number((tm.tm_yday + 7 - tm.tm_wday) / 7, 2, '0');
        break;
      case 'w':
        number(tm.tm_wday, 1, '0');
        break;
      case 'W':
        number((tm.tm_yday + 7 - (tm.tm_wday + 6) % 7) / 7, 2, '0');
        break;
      case 'y':
        number((tm.tm_year + 1900) % 100, 2, '0');
        break;
      case 'Y':
        number(tm.tm_year + 1900, 1, '0');
        break;
      case 'z':
      case 'Z':
        break;  // a naive datetime has no zone: Python prints nothing
      case '%':
        out.push_back('%');
        break;
      default:
        Fail(std::string("unsupported strftime directive '%") + format[i] + "'");
    }
  }
  return out;
}

void AddGlobals(Scope& scope) {
  auto add = [&scope](std::string_view name, Builtin::Fn fn) {
    scope.Set(name, Value::FromCallable(std::make_shared<Builtin>(name, fn)));
  };
  add("range", Range);
  add("namespace", MakeNamespace);
  add("dict", MakeDictValue);
  add("joiner", MakeJoiner);
  add("raise_exception", RaiseException);
  add("strftime_now", StrftimeNow);
}

}  // namespace yunzhi::engine::jinja
