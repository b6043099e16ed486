#include "engine/jinja/operators.h"

#include <cmath>
#include <cstdio>

#include "engine/jinja/evaluator.h"
#include "engine/jinja/methods.h"
#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {
namespace {

[[noreturn]] void Unsupported(std::string_view op, const Value& a, const Value& b) {
  Fail("unsupported operand type(s) for " + std::string(op) + ": '" + std::string(TypeName(a)) +
       "' and '" + std::string(TypeName(b)) + "'");
}

[[noreturn]] void Overflow() { Fail("integer overflow (the result does not fit in 64 bits)"); }

bool IsIntLike(const Value& v) { return v.is_int() || v.is_bool(); }

Value Repeat(Interpreter& interp, const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(times) > (SIZE_MAX / s.size())) Overflow();
    interp.ChargeString(s.size() * static_cast<size_t>(times));
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return seq.is_markup() ? Value::Markup(std::move(out)) : Value(std::move(out));
  }
  const ValueList& items = seq.as_list();
  if (!items.empty() && static_cast<uint64_t>(times) > (SIZE_MAX / 16 / items.size())) Overflow();
  interp.ChargeList(items.size() * static_cast<size_t>(times));
  ValueList out;
  out.reserve(items.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.is_tuple() ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
}

// CPython's float floor division and modulo.
void FloatDivMod(double a, double b, double* floordiv, double* mod) {
  double m = std::fmod(a, b);
  double div = (a - m) / b;
  if (m != 0.0) {
    if ((b < 0) != (m < 0)) {
      m += b;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, b);
  }
  double fd;
  if (div != 0.0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, a / b);
  }
  *floordiv = fd;
  *mod = m;
}

int64_t IntPow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) Overflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) Overflow();
  }
  return result;
}

}  // namespace

Value BinaryOperation(Interpreter& interp, BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::kMod && a.is_string()) {
    // printf-style formatting; an undefined argument is a (mapping-like) value like any other.
    std::string out = PercentFormat(interp, a.as_string(), b);
    interp.ChargeString(out.size());
    return Value(std::move(out));
  }
  if (a.is_undefined()) a.FailUndefined();
  if (b.is_undefined()) b.FailUndefined();
  const bool numbers = a.is_number() && b.is_number();
  const bool ints = IsIntLike(a) && IsIntLike(b);
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) {
        int64_t r;
        if (__builtin_add_overflow(a.IntValue(), b.IntValue(), &r)) Overflow();
        return Value(r);
      }
      if (numbers) return Value(a.FloatValue() + b.FloatValue());
      if (a.is_string() && b.is_string()) {
        if (a.is_markup() || b.is_markup()) {
          // markupsafe: the plain operand is HTML-escaped, the result is Markup.
          std::string left = a.is_markup() ? a.as_string() : HtmlEscape(a.as_string());
          std::string right = b.is_markup() ? b.as_string() : HtmlEscape(b.as_string());
          interp.ChargeString(left.size() + right.size());
          return Value::Markup(left + right);
        }
        interp.ChargeString(a.as_string().size() + b.as_string().size());
        return Value(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
        interp.ChargeList(a.as_list().size() + b.as_list().size());
        ValueList items = a.as_list();
        items.insert(items.end(), b.as_list().begin(), b.as_list().end());
        return a.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
      }
      if (a.is_string() || a.is_list()) {
        Fail("can only concatenate " + std::string(TypeName(a)) + " (not \"" +
             std::string(TypeName(b)) + "\") to " + std::string(TypeName(a)));
      }
      Unsupported("+", a, b);
    case BinaryOp::kSub:
      if (ints) {
        int64_t r;
        if (__builtin_sub_overflow(a.IntValue(), b.IntValue(), &r)) Overflow();
        return Value(r);
      }
      if (numbers) return Value(a.FloatValue() - b.FloatValue());
      Unsupported("-", a, b);
    case BinaryOp::kMul:
      if (ints) {
        int64_t r;
        if (__builtin_mul_overflow(a.IntValue(), b.IntValue(), &r)) Overflow();
        return Value(r);
      }
      if (numbers) return Value(a.FloatValue() * b.FloatValue());
      if ((a.is_string() || a.is_list()) && IsIntLike(b)) return Repeat(interp, a, b.IntValue());
      if (IsIntLike(a) && (b.is_string() || b.is_list())) return Repeat(interp, b, a.IntValue());
      if (a.is_string() || a.is_list() || b.is_string() || b.is_list()) {
        Fail("can't multiply sequence by non-int of type '" +
             std::string(TypeName(a.is_string() || a.is_list() ? b : a)) + "'");
      }
      Unsupported("*", a, b);
    case BinaryOp::kDiv:
      if (numbers) {
        if (b.FloatValue() == 0.0) Fail("division by zero");
        return Value(a.FloatValue() / b.FloatValue());
      }
      Unsupported("/", a, b);
    case BinaryOp::kFloorDiv:
      if (ints) {
        int64_t x = a.IntValue(), y = b.IntValue();
        if (y == 0) Fail("integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) Overflow();
        int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
        return Value(q);
      }
      if (numbers) {
        if (b.FloatValue() == 0.0) Fail("float floor division by zero");
        double fd, m;
        FloatDivMod(a.FloatValue(), b.FloatValue(), &fd, &m);
        return Value(fd);
      }
      Unsupported("//", a, b);
    case BinaryOp::kMod:
      if (ints) {
        int64_t x = a.IntValue(), y = b.IntValue();
        if (y == 0) Fail("integer division or modulo by zero");
        if (y == -1) return Value(static_cast<int64_t>(0));
        int64_t r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Value(r);
      }
      if (numbers) {
        if (b.FloatValue() == 0.0) Fail("float modulo");
        double fd, m;
        FloatDivMod(a.FloatValue(), b.FloatValue(), &fd, &m);
        return Value(m);
      }
      Unsupported("%", a, b);
    case BinaryOp::kPow:
      if (ints && b.IntValue() >= 0) return Value(IntPow(a.IntValue(), b.IntValue()));
      if (numbers) {
        double x = a.FloatValue(), y = b.FloatValue();
        if (x == 0.0 && y < 0) Fail("0.0 cannot be raised to a negative power");
        if (x < 0 && std::isfinite(y) && y != std::floor(y)) {
          Fail("complex numbers are not supported (negative number to a fractional power)");
        }
        return Value(std::pow(x, y));
      }
      Unsupported("** or pow()", a, b);
  }
  Fail("unknown operator");
}

Value Negate(const Value& v) {
  if (v.is_undefined()) v.FailUndefined();
  if (IsIntLike(v)) {
    if (v.IntValue() == INT64_MIN) Overflow();
    return Value(-v.IntValue());
  }
  if (v.is_float()) return Value(-v.as_float());
  Fail("bad operand type for unary -: '" + std::string(TypeName(v)) + "'");
}

Value UnaryPlus(const Value& v) {
  if (v.is_undefined()) v.FailUndefined();
  if (IsIntLike(v)) return Value(v.IntValue());
  if (v.is_float()) return v;
  Fail("bad operand type for unary +: '" + std::string(TypeName(v)) + "'");
}

Value SliceValue(const Value& value, const std::optional<Value>& start_arg,
                 const std::optional<Value>& stop_arg, const std::optional<Value>& step_arg) {
  if (!value.is_list() && !value.is_string()) {
    return Value::Undefined(std::string(TypeName(value)) + " object has no element slice");
  }
  auto index = [](const std::optional<Value>& v, bool* given) -> int64_t {
    *given = v && !v->is_none();
    if (!*given) return 0;
    if (v->is_undefined()) v->FailUndefined();
    if (!v->is_int() && !v->is_bool()) {
      Fail("slice indices must be integers or None or have an __index__ method");
    }
    return v->IntValue();
  };
  bool has_start, has_stop, has_step;
  int64_t start = index(start_arg, &has_start);
  int64_t stop = index(stop_arg, &has_stop);
  int64_t step = index(step_arg, &has_step);
  if (!has_step) step = 1;
  if (step == 0) Fail("slice step cannot be zero");

  std::vector<uint32_t> cps;
  int64_t length;
  if (value.is_string()) {
    cps = utf8::ToCodePoints(value.as_string());
    length = static_cast<int64_t>(cps.size());
  } else {
    length = static_cast<int64_t>(value.as_list().size());
  }
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](int64_t i, bool given, bool is_start) {
    if (!given) {
      if (step > 0) return is_start ? int64_t{0} : length;
      return is_start ? length - 1 : int64_t{-1};
    }
    if (i < 0) {
      i += length;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= length) {
      i = step < 0 ? length - 1 : length;
    }
    return i;
  };
  start = adjust(start, has_start, true);
  stop = adjust(stop, has_stop, false);

  std::vector<int64_t> picks;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) picks.push_back(i);
  } else {
    for (int64_t i = start; i > stop; i += step) picks.push_back(i);
  }
  if (value.is_string()) {
    std::string out;
    for (int64_t i : picks) utf8::Append(cps[static_cast<size_t>(i)], &out);
    return Value(std::move(out));
  }
  ValueList out;
  out.reserve(picks.size());
  for (int64_t i : picks) out.push_back(value.as_list()[static_cast<size_t>(i)]);
  return value.is_tuple() ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
}

std::string PercentFormat(Interpreter& interp, std::string_view format, const Value& args) {
  ValueList positional;
  if (args.is_tuple()) {
    positional = args.as_list();
  } else if (!args.is_dict()) {
    positional.push_back(args);
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) Fail("incomplete format");
    Value value;
    bool have_value = false;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string_view::npos) Fail("incomplete format key");
      if (!args.is_dict()) Fail("format requires a mapping");
      std::string key(format.substr(i + 1, close - i - 1));
      const Value* v = args.as_dict().Find(key);
      if (v == nullptr) Fail("'" + key + "'");
      value = *v;
      have_value = true;
      used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < format.size() &&
           std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      flags += format[i++];
    }
    std::string width, precision;
    bool has_precision = false;
    while (i < format.size() && format[i] >= '0' && format[i] <= '9') width += format[i++];
    if (i < format.size() && format[i] == '.') {
      has_precision = true;
      ++i;
      while (i < format.size() && format[i] >= '0' && format[i] <= '9') precision += format[i++];
    }
    if (i >= format.size()) Fail("incomplete format");
    char type = format[i];
    if (type == '%') {
      out += '%';
      continue;
    }
    if (!have_value) {
      if (next >= positional.size()) Fail("not enough arguments for format string");
      value = positional[next++];
    }
    if (value.is_undefined() && type != 's') value.FailUndefined();
    // Translate to a format spec and reuse str.format's formatting.
    std::string spec;
    bool left = flags.find('-') != std::string::npos;
    if (left) spec += '<';
    if (flags.find('+') != std::string::npos) {
      spec += '+';
    } else if (flags.find(' ') != std::string::npos) {
      spec += ' ';
    }
    if (flags.find('#') != std::string::npos) spec += '#';
    if (!left && flags.find('0') != std::string::npos && type != 's' && type != 'r') spec += '0';
    spec += width;
    if (has_precision) spec += "." + (precision.empty() ? std::string("0") : precision);
    std::string text_spec = std::string(left ? "<" : ">") + width;
    if (has_precision) text_spec += "." + (precision.empty() ? std::string("0") : precision);
    std::string text;
    switch (type) {
      case 's':
        text = ApplyFormatSpec(Value(ToStr(value)), text_spec);
        break;
      case 'r':
      case 'a':
        text = ApplyFormatSpec(Value(Repr(value)), text_spec);
        break;
      case 'd':
      case 'i':
      case 'u':
        if (!value.is_number())
          Fail("%d format: a real number is required, not " + std::string(TypeName(value)));
        text = ApplyFormatSpec(
            Value(value.is_float() ? static_cast<int64_t>(std::trunc(value.as_float()))
                                   : value.IntValue()),
            spec.substr(0, spec.find('.')) + "d");
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (!value.is_number()) Fail("must be real number, not " + std::string(TypeName(value)));
        text = ApplyFormatSpec(Value(value.FloatValue()),
                               spec + (has_precision ? "" : ".6") + std::string(1, type));
        break;
      case 'x':
      case 'X':
      case 'o':
        if (!IsIntLike(value))
          Fail("%x format: an integer is required, not " + std::string(TypeName(value)));
        text = ApplyFormatSpec(value, spec + std::string(1, type));
        break;
      case 'c':
        text = value.is_string() ? value.as_string() : ApplyFormatSpec(value, "c");
        break;
      default:
        Fail(std::string("unsupported format character '") + type + "'");
    }
    out += text;
    interp.ChargeString(out.size());
  }
  // CPython treats any non-tuple argument with __getitem__ (dict, list) as a mapping: it is
  // never reported as unconverted.
  bool mapping_like = args.is_dict() || (args.is_list() && !args.is_tuple()) || args.is_undefined();
  if (!used_mapping && next < positional.size() && !mapping_like) {
    Fail("not all arguments converted during string formatting");
  }
  return out;
}

}  // namespace yunzhi::engine::jinja
