#include "engine/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {

void Fail(std::string message) {
  throw TemplateError(TemplateError::Kind::kRuntime, std::move(message));
}

Value Value::Undefined(std::string message) {
  Value v;
  v.data_ = UndefinedRef{std::make_shared<const std::string>(std::move(message))};
  return v;
}

Value Value::None() {
  Value v;
  v.data_ = NoneTag{};
  return v;
}

Value Value::Markup(std::string s) {
  Value v;
  v.data_ = StringRef{std::make_shared<const std::string>(std::move(s)), true};
  return v;
}

Value Value::List(ValueList items) {
  Value v;
  v.data_ = ListRef{std::make_shared<const ValueList>(std::move(items)), false};
  return v;
}

Value Value::Tuple(ValueList items) {
  Value v;
  v.data_ = ListRef{std::make_shared<const ValueList>(std::move(items)), true};
  return v;
}

Value Value::FromDict(std::shared_ptr<const Dict> dict) {
  Value v;
  v.data_ = std::move(dict);
  return v;
}

Value Value::FromDict(Dict dict) { return FromDict(std::make_shared<const Dict>(std::move(dict))); }

Value Value::FromCallable(std::shared_ptr<const Callable> callable) {
  Value v;
  v.data_ = std::move(callable);
  return v;
}

Value Value::FromObject(std::shared_ptr<Object> object) {
  Value v;
  v.data_ = std::move(object);
  return v;
}

std::string Value::undefined_message() const {
  const auto& ref = std::get<UndefinedRef>(data_);
  return ref.message ? *ref.message : std::string("value is undefined");
}

void Value::FailUndefined() const { Fail(undefined_message()); }

// ---- Dict ----

const Value* Dict::Find(std::string_view key) const {
  if (!index_.empty()) {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  for (const Entry& e : entries_) {
    if (e.first == key) return &e.second;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  if (!index_.empty()) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      entries_[it->second].second = std::move(value);
      return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(value));
    return;
  }
  for (Entry& e : entries_) {
    if (e.first == key) {
      e.second = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
  if (entries_.size() >= kIndexFrom) {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  }
}

// ---- arguments ----

std::vector<std::optional<Value>> BindArgs(const CallArgs& args, std::string_view callee,
                                           std::initializer_list<std::string_view> names,
                                           size_t n_required) {
  std::vector<std::string_view> params(names);
  std::vector<std::optional<Value>> bound(params.size());
  if (args.positional.size() > params.size()) {
    Fail(std::string(callee) + "() takes at most " + std::to_string(params.size()) +
         " argument(s) (" + std::to_string(args.positional.size()) + " given)");
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    auto it = std::find(params.begin(), params.end(), key);
    if (it == params.end()) {
      Fail(std::string(callee) + "() got an unexpected keyword argument '" + key + "'");
    }
    auto& slot = bound[static_cast<size_t>(it - params.begin())];
    if (slot) Fail(std::string(callee) + "() got multiple values for argument '" + key + "'");
    slot = value;
  }
  for (size_t i = 0; i < n_required && i < params.size(); ++i) {
    if (!bound[i]) {
      Fail(std::string(callee) + "() missing required argument '" + std::string(params[i]) + "'");
    }
  }
  return bound;
}

// ---- Python semantics ----

std::string_view TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.is_tuple() ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kCallable:
      return "function";
    case Value::Kind::kObject:
      return v.as_object().TypeName();
  }
  return "object";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.as_string().empty();
    case Value::Kind::kList:
      return !v.as_list().empty();
    case Value::Kind::kDict:
      return !v.as_dict().empty();
    case Value::Kind::kCallable:
    case Value::Kind::kObject:
      return true;
  }
  return false;
}

namespace {

bool NumbersEqual(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) return a.IntValue() == b.IntValue();
  return a.FloatValue() == b.FloatValue();
}

}  // namespace

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return NumbersEqual(a, b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple()) return false;
      const ValueList& x = a.as_list();
      const ValueList& y = b.as_list();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.entries()) {
        const Value* other = y.Find(key);
        if (other == nullptr || !Equals(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kCallable:
      return &a.as_callable() == &b.as_callable();
    case Value::Kind::kObject:
      return &a.as_object() == &b.as_object();
    default:
      return false;
  }
}

namespace {

// -1, 0 or 1; 2 when unordered (NaN). Fails when Python cannot order the two values.
int Order(const Value& a, const Value& b, std::string_view op) {
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) {
      int64_t x = a.IntValue(), y = b.IntValue();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    double x = a.FloatValue(), y = b.FloatValue();
    if (std::isnan(x) || std::isnan(y)) return 2;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_undefined()) a.FailUndefined();
  if (b.is_undefined()) b.FailUndefined();
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const ValueList& x = a.as_list();
    const ValueList& y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!Equals(x[i], y[i])) return Order(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  Fail("'" + std::string(op) + "' not supported between instances of '" + std::string(TypeName(a)) +
       "' and '" + std::string(TypeName(b)) + "'");
}

}  // namespace

bool Compare(const Value& a, const Value& b, std::string_view op) {
  int order = Order(a, b, op);
  if (order == 2) return false;
  if (op == "<") return order < 0;
  if (op == "<=") return order <= 0;
  if (op == ">") return order > 0;
  return order >= 0;  // ">="
}

bool IsHashable(const Value& v) {
  if (v.is_dict()) return false;
  if (v.is_list()) {
    if (!v.is_tuple()) return false;
    return std::all_of(v.as_list().begin(), v.as_list().end(), IsHashable);
  }
  return true;
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (item.is_undefined()) item.FailUndefined();
      if (!item.is_string()) {
        Fail("'in <string>' requires string as left operand, not " + std::string(TypeName(item)));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      return std::any_of(container.as_list().begin(), container.as_list().end(),
                         [&item](const Value& v) { return Equals(v, item); });
    case Value::Kind::kDict:
      if (!IsHashable(item)) Fail("unhashable type: '" + std::string(TypeName(item)) + "'");
      return item.is_string() && container.as_dict().Find(item.as_string()) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      Fail("argument of type '" + std::string(TypeName(container)) + "' is not iterable");
  }
}

std::string FloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout rule: scientific when the decimal exponent
  // is < -4 or >= 16, else positional with at least one fractional digit.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  int decpt = exponent + 1;
  std::string out = negative ? "-" : "";
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char ebuf[16];
    std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += ebuf;
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    out += digits;
    out.append(static_cast<size_t>(decpt) - digits.size(), '0');
    out += ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(decpt));
    out += '.';
    out += digits.substr(static_cast<size_t>(decpt));
  }
  return out;
}

std::string StringRepr(std::string_view text) {
  bool has_single = text.find('\'') != std::string_view::npos;
  bool has_double = text.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len) {
    uint32_t cp = utf8::Decode(text, pos, &len);
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (utf8::IsPrintable(cp)) {
      out.append(text.substr(pos, len));
    } else {
      char buf[16];
      if (cp < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
        std::snprintf(buf, sizeof(buf), "\\udc%02x", cp & 0xFF);
      } else if (cp < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", cp);
      }
      out += buf;
    }
  }
  out += quote;
  return out;
}

namespace {

void AppendRepr(const Value& v, std::string* out);

void AppendScalar(const Value& v, std::string* out) {
  switch (v.kind()) {
    case Value::Kind::kNone:
      *out += "None";
      break;
    case Value::Kind::kBool:
      *out += v.as_bool() ? "True" : "False";
      break;
    case Value::Kind::kInt:
      *out += std::to_string(v.as_int());
      break;
    case Value::Kind::kFloat:
      *out += FloatRepr(v.as_float());
      break;
    case Value::Kind::kList: {
      const ValueList& items = v.as_list();
      *out += v.is_tuple() ? '(' : '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) *out += ", ";
        AppendRepr(items[i], out);
      }
      if (v.is_tuple() && items.size() == 1) *out += ',';
      *out += v.is_tuple() ? ')' : ']';
      break;
    }
    case Value::Kind::kDict: {
      *out += '{';
      bool first = true;
      for (const auto& [key, value] : v.as_dict().entries()) {
        if (!first) *out += ", ";
        first = false;
        *out += StringRepr(key);
        *out += ": ";
        AppendRepr(value, out);
      }
      *out += '}';
      break;
    }
    case Value::Kind::kCallable:
      *out += v.as_callable().Repr();
      break;
    case Value::Kind::kObject:
      *out += v.as_object().Repr();
      break;
    default:
      break;
  }
}

void AppendRepr(const Value& v, std::string* out) {
  if (v.is_markup()) {
    *out += "Markup(" + StringRepr(v.as_string()) + ")";
  } else if (v.is_string()) {
    *out += StringRepr(v.as_string());
  } else if (v.is_undefined()) {
    *out += "Undefined";
  } else {
    AppendScalar(v, out);
  }
}

}  // namespace

void AppendStr(const Value& v, std::string* out) {
  if (v.is_string()) {
    *out += v.as_string();
  } else if (!v.is_undefined()) {
    AppendScalar(v, out);
  }
}

std::string ToStr(const Value& v) {
  if (v.is_string()) return v.as_string();
  std::string out;
  AppendStr(v, &out);
  return out;
}

std::string Repr(const Value& v) {
  std::string out;
  AppendRepr(v, &out);
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

ValueList Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
      return v.as_list();
    case Value::Kind::kDict: {
      ValueList keys;
      keys.reserve(v.as_dict().size());
      for (const auto& entry : v.as_dict().entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case Value::Kind::kString: {
      const std::string& s = v.as_string();
      ValueList chars;
      chars.reserve(s.size());
      for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
        utf8::Decode(s, pos, &len);
        chars.emplace_back(std::string_view(s).substr(pos, len));
      }
      return chars;
    }
    case Value::Kind::kUndefined:
      return {};
    default:
      Fail("'" + std::string(TypeName(v)) + "' object is not iterable");
  }
}

int64_t Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return static_cast<int64_t>(utf8::Length(v.as_string()));
    case Value::Kind::kList:
      return static_cast<int64_t>(v.as_list().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.as_dict().size());
    case Value::Kind::kUndefined:
      return 0;
    default:
      Fail("object of type '" + std::string(TypeName(v)) + "' has no len()");
  }
}

}  // namespace yunzhi::engine::jinja
