#include "engine/jinja/methods.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>

#include "engine/jinja/evaluator.h"
#include "engine/jinja/operators.h"
#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {
namespace {

using MethodFn = Value (*)(Interpreter& interp, const Value& self, CallArgs& args);

struct Method {
  std::string_view name;
  MethodFn fn;  // null: exists in Python but is not supported here
};

class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, std::string_view type, const Method& method)
      : self_(std::move(self)), type_(type), method_(method) {}

  Value Call(Interpreter& interp, CallArgs& args) const override {
    if (method_.fn == nullptr) {
      Fail(std::string(type_) + "." + std::string(method_.name) +
           "() is not supported in chat templates");
    }
    return method_.fn(interp, self_, args);
  }
  std::string Repr() const override {
    return "<built-in method " + std::string(method_.name) + " of " + std::string(type_) +
           " object>";
  }

 private:
  Value self_;
  std::string_view type_;
  Method method_;
};

// ---- argument helpers ----

const std::string& StringArg(const Value& v, std::string_view what) {
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_string()) {
    Fail(std::string(what) + " must be str, not " + std::string(TypeName(v)));
  }
  return v.as_string();
}

int64_t IntArg(const Value& v, std::string_view what) {
  if (v.is_undefined()) v.FailUndefined();
  if (!v.is_int() && !v.is_bool()) {
    Fail("'" + std::string(TypeName(v)) + "' object cannot be interpreted as an integer (" +
         std::string(what) + ")");
  }
  return v.IntValue();
}

bool IsNoneOrMissing(const std::optional<Value>& v) { return !v || v->is_none(); }

// Python's adjustment of optional start/end indices to [0, length].
void AdjustRange(const std::optional<Value>& start, const std::optional<Value>& end, int64_t length,
                 int64_t* begin_out, int64_t* end_out) {
  auto adjust = [length](int64_t i) {
    if (i < 0) i += length;
    return std::clamp<int64_t>(i, 0, length);
  };
  *begin_out = IsNoneOrMissing(start) ? 0 : adjust(IntArg(*start, "slice index"));
  *end_out = IsNoneOrMissing(end) ? length : adjust(IntArg(*end, "slice index"));
}

std::string SubstrByCodePoints(const std::vector<uint32_t>& cps, int64_t begin, int64_t end) {
  std::string out;
  for (int64_t i = begin; i < end; ++i) utf8::Append(cps[static_cast<size_t>(i)], &out);
  return out;
}

// ---- str ----

Value StrStripImpl(const Value& self, CallArgs& args, const char* name, bool left, bool right) {
  auto a = BindArgs(args, name, {"chars"});
  const std::string& s = self.as_string();
  if (IsNoneOrMissing(a[0])) return Value(utf8::StripSpace(s, left, right));
  return Value(utf8::StripChars(s, StringArg(*a[0], "strip arg"), left, right));
}
Value StrStrip(Interpreter&, const Value& self, CallArgs& args) {
  return StrStripImpl(self, args, "strip", true, true);
}
Value StrLstrip(Interpreter&, const Value& self, CallArgs& args) {
  return StrStripImpl(self, args, "lstrip", true, false);
}
Value StrRstrip(Interpreter&, const Value& self, CallArgs& args) {
  return StrStripImpl(self, args, "rstrip", false, true);
}

// Splits on runs of whitespace, at most `maxsplit` times (negative: no limit).
ValueList SplitWhitespace(std::string_view s, int64_t maxsplit, bool from_right) {
  std::vector<std::string_view> parts;
  if (!from_right) {
    size_t pos = 0;
    while (true) {
      std::string_view rest = utf8::StripSpace(s.substr(pos), true, false);
      pos = s.size() - rest.size();
      if (pos >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(s.substr(pos));  // Python keeps the remainder's trailing whitespace
        break;
      }
      size_t end = pos;
      while (end < s.size()) {
        size_t len = 0;
        if (utf8::IsSpace(utf8::Decode(s, end, &len))) break;
        end += len;
      }
      parts.push_back(s.substr(pos, end - pos));
      pos = end;
    }
  } else {
    std::vector<uint32_t> cps = utf8::ToCodePoints(s);
    int64_t end = static_cast<int64_t>(cps.size());
    std::vector<std::string> rparts;
    while (true) {
      while (end > 0 && utf8::IsSpace(cps[static_cast<size_t>(end - 1)])) --end;
      if (end <= 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(rparts.size()) == maxsplit) {
        rparts.push_back(SubstrByCodePoints(cps, 0, end));  // keeps leading whitespace
        break;
      }
      int64_t begin = end;
      while (begin > 0 && !utf8::IsSpace(cps[static_cast<size_t>(begin - 1)])) --begin;
      rparts.push_back(SubstrByCodePoints(cps, begin, end));
      end = begin;
    }
    ValueList out;
    for (auto it = rparts.rbegin(); it != rparts.rend(); ++it) out.emplace_back(*it);
    return out;
  }
  ValueList out;
  for (std::string_view p : parts) out.emplace_back(p);
  return out;
}

ValueList SplitOn(std::string_view s, std::string_view sep, int64_t maxsplit, bool from_right) {
  if (sep.empty()) Fail("empty separator");
  std::vector<std::string_view> parts;
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      size_t hit = s.find(sep, pos);
      if (hit == std::string_view::npos) break;
      parts.push_back(s.substr(pos, hit - pos));
      pos = hit + sep.size();
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    std::vector<std::string_view> rparts;
    while (maxsplit < 0 || static_cast<int64_t>(rparts.size()) < maxsplit) {
      if (end < sep.size()) break;
      size_t hit = s.substr(0, end).rfind(sep);
      if (hit == std::string_view::npos) break;
      rparts.push_back(s.substr(hit + sep.size(), end - hit - sep.size()));
      end = hit;
    }
    rparts.push_back(s.substr(0, end));
    parts.assign(rparts.rbegin(), rparts.rend());
  }
  ValueList out;
  out.reserve(parts.size());
  for (std::string_view p : parts) out.emplace_back(p);
  return out;
}

Value StrSplitImpl(Interpreter& interp, const Value& self, CallArgs& args, const char* name,
                   bool from_right) {
  auto a = BindArgs(args, name, {"sep", "maxsplit"});
  int64_t maxsplit = a[1] ? IntArg(*a[1], "maxsplit") : -1;
  ValueList parts = IsNoneOrMissing(a[0])
                        ? SplitWhitespace(self.as_string(), maxsplit, from_right)
                        : SplitOn(self.as_string(), StringArg(*a[0], "sep"), maxsplit, from_right);
  interp.ChargeList(parts.size());
  return Value::List(std::move(parts));
}
Value StrSplit(Interpreter& interp, const Value& self, CallArgs& args) {
  return StrSplitImpl(interp, self, args, "split", false);
}
Value StrRsplit(Interpreter& interp, const Value& self, CallArgs& args) {
  return StrSplitImpl(interp, self, args, "rsplit", true);
}

bool IsLineBreak(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
         cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

Value StrSplitlines(Interpreter& interp, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "splitlines", {"keepends"});
  bool keepends = a[0] && Truthy(*a[0]);
  const std::string& s = self.as_string();
  ValueList lines;
  size_t start = 0;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    if (!IsLineBreak(cp)) continue;
    size_t brk_end = pos + len;
    if (cp == '\r' && brk_end < s.size() && s[brk_end] == '\n') ++brk_end;
    lines.emplace_back(std::string_view(s).substr(start, (keepends ? brk_end : pos) - start));
    start = brk_end;
    len = brk_end - pos;
  }
  if (start < s.size()) lines.emplace_back(std::string_view(s).substr(start));
  interp.ChargeList(lines.size());
  return Value::List(std::move(lines));
}

Value StrAffixImpl(const Value& self, CallArgs& args, const char* name, bool prefix) {
  auto a = BindArgs(args, name, {"prefix", "start", "end"}, 1);
  std::string_view s = self.as_string();
  std::string region_storage;
  if (!IsNoneOrMissing(a[1]) || !IsNoneOrMissing(a[2])) {
    std::vector<uint32_t> cps = utf8::ToCodePoints(s);
    int64_t begin = 0, end = 0;
    AdjustRange(a[1], a[2], static_cast<int64_t>(cps.size()), &begin, &end);
    region_storage = begin < end ? SubstrByCodePoints(cps, begin, end) : std::string();
    s = region_storage;
  }
  auto matches = [&](const Value& v) {
    const std::string& affix = StringArg(v, std::string(name) + " arg");
    if (affix.size() > s.size()) return false;
    return prefix ? s.substr(0, affix.size()) == affix : s.substr(s.size() - affix.size()) == affix;
  };
  if (a[0]->is_list() && a[0]->is_tuple()) {
    return Value(std::any_of(a[0]->as_list().begin(), a[0]->as_list().end(), matches));
  }
  if (!a[0]->is_string()) {
    Fail(std::string(name) + " first arg must be str or a tuple of str, not " +
         std::string(TypeName(*a[0])));
  }
  return Value(matches(*a[0]));
}
Value StrStartswith(Interpreter&, const Value& self, CallArgs& args) {
  return StrAffixImpl(self, args, "startswith", true);
}
Value StrEndswith(Interpreter&, const Value& self, CallArgs& args) {
  return StrAffixImpl(self, args, "endswith", false);
}

Value StrReplace(Interpreter& interp, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "replace", {"old", "new", "count"}, 2);
  const std::string& s = self.as_string();
  const std::string& old_s = StringArg(*a[0], "replace() argument 1");
  const std::string& new_s = StringArg(*a[1], "replace() argument 2");
  int64_t count = a[2] ? IntArg(*a[2], "count") : -1;
  std::string out;
  if (old_s.empty()) {
    // Python inserts `new` before every character and at the end.
    int64_t done = 0;
    for (size_t pos = 0, len = 0; pos <= s.size(); pos += len) {
      if (count < 0 || done < count) {
        out += new_s;
        ++done;
      }
      if (pos == s.size()) break;
      utf8::Decode(s, pos, &len);
      out.append(s, pos, len);
      interp.ChargeString(out.size());
    }
    return Value(std::move(out));
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old_s, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += new_s;
    pos = hit + old_s.size();
    ++done;
    if (out.size() > s.size()) interp.ChargeString(out.size());
  }
  out.append(s, pos, std::string::npos);
  interp.ChargeString(out.size());
  return Value(std::move(out));
}

Value StrUpper(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "upper", {});
  return Value(utf8::Upper(self.as_string()));
}
Value StrLower(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "lower", {});
  return Value(utf8::Lower(self.as_string()));
}

std::string PythonTitle(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    bool cased = utf8::IsUpper(cp) || utf8::IsLower(cp);
    utf8::Append(previous_cased ? utf8::ToLower(cp) : utf8::ToUpper(cp), &out);
    previous_cased = cased;
  }
  return out;
}

Value StrTitle(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "title", {});
  return Value(PythonTitle(self.as_string()));
}

Value StrCapitalize(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "capitalize", {});
  const std::string& s = self.as_string();
  std::string out;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    utf8::Append(pos == 0 ? utf8::ToUpper(cp) : utf8::ToLower(cp), &out);
  }
  return Value(std::move(out));
}

Value StrSwapcase(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "swapcase", {});
  const std::string& s = self.as_string();
  std::string out;
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    utf8::Append(utf8::IsUpper(cp) ? utf8::ToLower(cp) : utf8::ToUpper(cp), &out);
  }
  return Value(std::move(out));
}

// find/rfind/index/rindex/count on code points.
int64_t FindImpl(const Value& self, CallArgs& args, const char* name, bool reverse, bool* found) {
  auto a = BindArgs(args, name, {"sub", "start", "end"}, 1);
  const std::string& sub_s = StringArg(*a[0], std::string(name) + " arg");
  std::vector<uint32_t> cps = utf8::ToCodePoints(self.as_string());
  std::vector<uint32_t> sub = utf8::ToCodePoints(sub_s);
  int64_t begin = 0, end = 0;
  AdjustRange(a[1], a[2], static_cast<int64_t>(cps.size()), &begin, &end);
  auto n = static_cast<int64_t>(sub.size());
  *found = false;
  if (end - begin < n) return -1;
  auto match_at = [&](int64_t i) { return std::equal(sub.begin(), sub.end(), cps.begin() + i); };
  if (!reverse) {
    for (int64_t i = begin; i + n <= end; ++i) {
      if (match_at(i)) {
        *found = true;
        return i;
      }
    }
  } else {
    for (int64_t i = end - n; i >= begin; --i) {
      if (match_at(i)) {
        *found = true;
        return i;
      }
    }
  }
  return -1;
}
Value StrFind(Interpreter&, const Value& self, CallArgs& args) {
  bool found = false;
  return Value(FindImpl(self, args, "find", false, &found));
}
Value StrRfind(Interpreter&, const Value& self, CallArgs& args) {
  bool found = false;
  return Value(FindImpl(self, args, "rfind", true, &found));
}
Value StrIndex(Interpreter&, const Value& self, CallArgs& args) {
  bool found = false;
  int64_t i = FindImpl(self, args, "index", false, &found);
  if (!found) Fail("substring not found");
  return Value(i);
}
Value StrRindex(Interpreter&, const Value& self, CallArgs& args) {
  bool found = false;
  int64_t i = FindImpl(self, args, "rindex", true, &found);
  if (!found) Fail("substring not found");
  return Value(i);
}

Value StrCount(Interpreter&, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "count", {"sub", "start", "end"}, 1);
  const std::string& sub_s = StringArg(*a[0], "count arg");
  std::vector<uint32_t> cps = utf8::ToCodePoints(self.as_string());
  std::vector<uint32_t> sub = utf8::ToCodePoints(sub_s);
  int64_t begin = 0, end = 0;
  AdjustRange(a[1], a[2], static_cast<int64_t>(cps.size()), &begin, &end);
  if (begin > end) return Value(0);
  if (sub.empty()) return Value(end - begin + 1);
  int64_t n = 0;
  auto len = static_cast<int64_t>(sub.size());
  for (int64_t i = begin; i + len <= end;) {
    if (std::equal(sub.begin(), sub.end(), cps.begin() + i)) {
      ++n;
      i += len;
    } else {
      ++i;
    }
  }
  return Value(n);
}

Value StrJoin(Interpreter& interp, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "join", {"iterable"}, 1);
  ValueList items = Iterate(*a[0]);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      Fail("sequence item " + std::to_string(i) + ": expected str instance, " +
           std::string(TypeName(items[i])) + " found");
    }
    if (i > 0) out += self.as_string();
    out += items[i].as_string();
    interp.ChargeString(out.size());
  }
  return Value(std::move(out));
}

Value StrFormatMethod(Interpreter& interp, const Value& self, CallArgs& args) {
  return Value(StrFormat(interp, self.as_string(), args));
}

template <bool (*Pred)(uint32_t)>
Value StrAll(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "is...", {});
  const std::string& s = self.as_string();
  if (s.empty()) return Value(false);
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    if (!Pred(utf8::Decode(s, pos, &len))) return Value(false);
  }
  return Value(true);
}
bool IsAlnumCp(uint32_t cp) { return utf8::IsAlpha(cp) || utf8::IsDigit(cp); }

// Python islower/isupper: at least one cased character, and none of the other case.
template <bool kLower>
Value StrIsCase(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, kLower ? "islower" : "isupper", {});
  bool any_cased = false;
  const std::string& s = self.as_string();
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    uint32_t cp = utf8::Decode(s, pos, &len);
    if (kLower ? utf8::IsUpper(cp) : utf8::IsLower(cp)) return Value(false);
    if (kLower ? utf8::IsLower(cp) : utf8::IsUpper(cp)) any_cased = true;
  }
  return Value(any_cased);
}

Value StrRemoveAffix(const Value& self, CallArgs& args, bool prefix) {
  auto a = BindArgs(args, prefix ? "removeprefix" : "removesuffix", {"affix"}, 1);
  std::string_view s = self.as_string();
  const std::string& affix = StringArg(*a[0], "argument");
  if (prefix && s.substr(0, affix.size()) == affix) return Value(s.substr(affix.size()));
  if (!prefix && affix.size() <= s.size() && s.substr(s.size() - affix.size()) == affix) {
    return Value(s.substr(0, s.size() - affix.size()));
  }
  return self;
}
Value StrRemoveprefix(Interpreter&, const Value& self, CallArgs& args) {
  return StrRemoveAffix(self, args, true);
}
Value StrRemovesuffix(Interpreter&, const Value& self, CallArgs& args) {
  return StrRemoveAffix(self, args, false);
}

Value StrPartitionImpl(const Value& self, CallArgs& args, bool reverse) {
  auto a = BindArgs(args, reverse ? "rpartition" : "partition", {"sep"}, 1);
  std::string_view s = self.as_string();
  const std::string& sep = StringArg(*a[0], "sep");
  if (sep.empty()) Fail("empty separator");
  size_t hit = reverse ? s.rfind(sep) : s.find(sep);
  if (hit == std::string_view::npos) {
    return reverse ? Value::Tuple({Value(""), Value(""), self})
                   : Value::Tuple({self, Value(""), Value("")});
  }
  return Value::Tuple({Value(s.substr(0, hit)), Value(sep), Value(s.substr(hit + sep.size()))});
}
Value StrPartition(Interpreter&, const Value& self, CallArgs& args) {
  return StrPartitionImpl(self, args, false);
}
Value StrRpartition(Interpreter&, const Value& self, CallArgs& args) {
  return StrPartitionImpl(self, args, true);
}

// ljust / rjust / center / zfill.
Value StrPad(Interpreter& interp, const Value& self, CallArgs& args, char mode) {
  const char* name = mode == 'l' ? "ljust" : (mode == 'r' ? "rjust" : "center");
  auto a = BindArgs(args, name, {"width", "fillchar"}, 1);
  int64_t width = IntArg(*a[0], "width");
  std::string fill = " ";
  if (a[1]) {
    fill = StringArg(*a[1], "fillchar");
    if (utf8::Length(fill) != 1) Fail("The fill character must be exactly one character long");
  }
  const std::string& s = self.as_string();
  auto len = static_cast<int64_t>(utf8::Length(s));
  if (width <= len) return self;
  int64_t margin = width - len;
  int64_t left = 0;
  if (mode == 'r') left = margin;
  if (mode == 'c') left = margin / 2 + (margin & width & 1);
  interp.ChargeString(s.size() + static_cast<size_t>(margin) * fill.size());
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = left; i < margin; ++i) out += fill;
  return Value(std::move(out));
}
Value StrLjust(Interpreter& interp, const Value& self, CallArgs& args) {
  return StrPad(interp, self, args, 'l');
}
Value StrRjust(Interpreter& interp, const Value& self, CallArgs& args) {
  return StrPad(interp, self, args, 'r');
}
Value StrCenter(Interpreter& interp, const Value& self, CallArgs& args) {
  return StrPad(interp, self, args, 'c');
}
Value StrZfill(Interpreter& interp, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "zfill", {"width"}, 1);
  int64_t width = IntArg(*a[0], "width");
  const std::string& s = self.as_string();
  auto len = static_cast<int64_t>(utf8::Length(s));
  if (width <= len) return self;
  interp.ChargeString(static_cast<size_t>(width));
  size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  return Value(s.substr(0, sign) + std::string(static_cast<size_t>(width - len), '0') +
               s.substr(sign));
}

constexpr Method kStrMethods[] = {
    {"capitalize", StrCapitalize},
    {"casefold", StrLower},
    {"center", StrCenter},
    {"count", StrCount},
    {"encode", nullptr},
    {"endswith", StrEndswith},
    {"expandtabs", nullptr},
    {"find", StrFind},
    {"format", StrFormatMethod},
    {"format_map", nullptr},
    {"index", StrIndex},
    {"isalnum", StrAll<IsAlnumCp>},
    {"isalpha", StrAll<utf8::IsAlpha>},
    {"isascii", nullptr},
    {"isdecimal", StrAll<utf8::IsDigit>},
    {"isdigit", StrAll<utf8::IsDigit>},
    {"isidentifier", nullptr},
    {"islower", StrIsCase<true>},
    {"isnumeric", StrAll<utf8::IsDigit>},
    {"isprintable", nullptr},
    {"isspace", StrAll<utf8::IsSpace>},
    {"istitle", nullptr},
    {"isupper", StrIsCase<false>},
    {"join", StrJoin},
    {"ljust", StrLjust},
    {"lower", StrLower},
    {"lstrip", StrLstrip},
    {"maketrans", nullptr},
    {"partition", StrPartition},
    {"removeprefix", StrRemoveprefix},
    {"removesuffix", StrRemovesuffix},
    {"replace", StrReplace},
    {"rfind", StrRfind},
    {"rindex", StrRindex},
    {"rjust", StrRjust},
    {"rpartition", StrRpartition},
    {"rsplit", StrRsplit},
    {"rstrip", StrRstrip},
    {"split", StrSplit},
    {"splitlines", StrSplitlines},
    {"startswith", StrStartswith},
    {"strip", StrStrip},
    {"swapcase", StrSwapcase},
    {"title", StrTitle},
    {"translate", nullptr},
    {"upper", StrUpper},
    {"zfill", StrZfill},
};

// ---- dict ----

Value DictGet(Interpreter&, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "get", {"key", "default"}, 1);
  if (a[0]->is_string()) {
    if (const Value* v = self.as_dict().Find(a[0]->as_string())) return *v;
  }
  return a[1] ? *a[1] : Value::None();
}

Value DictItems(Interpreter& interp, const Value& self, CallArgs& args) {
  BindArgs(args, "items", {});
  ValueList items;
  items.reserve(self.as_dict().size());
  for (const auto& [key, value] : self.as_dict().entries()) {
    items.push_back(Value::Tuple({Value(key), value}));
  }
  interp.ChargeList(items.size());
  return Value::List(std::move(items));
}

Value DictKeys(Interpreter& interp, const Value& self, CallArgs& args) {
  BindArgs(args, "keys", {});
  interp.ChargeList(self.as_dict().size());
  return Value::List(Iterate(self));
}

Value DictValues(Interpreter& interp, const Value& self, CallArgs& args) {
  BindArgs(args, "values", {});
  ValueList values;
  for (const auto& entry : self.as_dict().entries()) values.push_back(entry.second);
  interp.ChargeList(values.size());
  return Value::List(std::move(values));
}

Value Copy(Interpreter&, const Value& self, CallArgs& args) {
  BindArgs(args, "copy", {});
  return self;
}

constexpr Method kDictMethods[] = {
    {"copy", Copy},       {"fromkeys", nullptr}, {"get", DictGet},
    {"items", DictItems}, {"keys", DictKeys},    {"values", DictValues},
};
constexpr std::string_view kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};

// ---- list / tuple ----

Value SeqCount(Interpreter&, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "count", {"value"}, 1);
  return Value(
      static_cast<int64_t>(std::count_if(self.as_list().begin(), self.as_list().end(),
                                         [&](const Value& v) { return Equals(v, *a[0]); })));
}

Value SeqIndex(Interpreter&, const Value& self, CallArgs& args) {
  auto a = BindArgs(args, "index", {"value"}, 1);
  const ValueList& items = self.as_list();
  for (size_t i = 0; i < items.size(); ++i) {
    if (Equals(items[i], *a[0])) return Value(static_cast<int64_t>(i));
  }
  Fail(Repr(*a[0]) + " is not in " + std::string(TypeName(self)));
}

constexpr Method kListMethods[] = {{"copy", Copy}, {"count", SeqCount}, {"index", SeqIndex}};
constexpr Method kTupleMethods[] = {{"count", SeqCount}, {"index", SeqIndex}};
constexpr std::string_view kListUnsafe[] = {"append", "clear",  "extend",  "insert",
                                            "pop",    "remove", "reverse", "sort"};

template <size_t N>
const Method* FindMethod(const Method (&table)[N], std::string_view name) {
  for (const Method& m : table) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

template <size_t N>
bool Contains(const std::string_view (&table)[N], std::string_view name) {
  return std::find(std::begin(table), std::end(table), name) != std::end(table);
}

Value Unsafe(const Value& object, std::string_view name) {
  return Value::Undefined("access to attribute '" + std::string(name) + "' of '" +
                          std::string(TypeName(object)) + "' object is unsafe.");
}

// The Python attribute `name` of `object`, or nullopt.
std::optional<Value> PythonAttribute(const Value& object, std::string_view name) {
  if (!name.empty() && name[0] == '_') return Unsafe(object, name);
  const Method* m = nullptr;
  switch (object.kind()) {
    case Value::Kind::kString:
      m = FindMethod(kStrMethods, name);
      break;
    case Value::Kind::kDict:
      if (Contains(kDictUnsafe, name)) return Unsafe(object, name);
      m = FindMethod(kDictMethods, name);
      break;
    case Value::Kind::kList:
      if (object.is_tuple()) {
        m = FindMethod(kTupleMethods, name);
      } else {
        if (Contains(kListUnsafe, name)) return Unsafe(object, name);
        m = FindMethod(kListMethods, name);
      }
      break;
    case Value::Kind::kObject:
      return object.as_object().GetAttr(name);
    default:
      break;
  }
  if (m == nullptr) return std::nullopt;
  return Value::FromCallable(std::make_shared<BoundMethod>(object, TypeName(object), *m));
}

std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  return std::string(TypeName(v)) + " object";
}

}  // namespace

Value GetAttribute(const Value& object, std::string_view name) {
  if (object.is_undefined()) object.FailUndefined();
  if (std::optional<Value> attr = PythonAttribute(object, name)) return *attr;
  if (object.is_dict()) {
    if (const Value* v = object.as_dict().Find(name)) return *v;
  }
  return Value::Undefined("'" + ObjectTypeRepr(object) + "' has no attribute '" +
                          std::string(name) + "'");
}

Value GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) object.FailUndefined();
  switch (object.kind()) {
    case Value::Kind::kDict:
      if (key.is_string()) {
        if (const Value* v = object.as_dict().Find(key.as_string())) return *v;
      }
      break;
    case Value::Kind::kList:
      if (key.is_int() || key.is_bool()) {
        const ValueList& items = object.as_list();
        int64_t i = key.IntValue();
        auto n = static_cast<int64_t>(items.size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return items[static_cast<size_t>(i)];
      }
      break;
    case Value::Kind::kString:
      if (key.is_int() || key.is_bool()) {
        const std::string& s = object.as_string();
        int64_t i = key.IntValue();
        if (utf8::IsAscii(s)) {
          auto n = static_cast<int64_t>(s.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value(std::string(1, s[static_cast<size_t>(i)]));
        } else {
          std::vector<uint32_t> cps = utf8::ToCodePoints(s);
          auto n = static_cast<int64_t>(cps.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value(SubstrByCodePoints(cps, i, i + 1));
        }
      }
      break;
    default:
      break;
  }
  if (key.is_string()) {
    if (std::optional<Value> attr = PythonAttribute(object, key.as_string())) return *attr;
  }
  return Value::Undefined(ObjectTypeRepr(object) + " has no element " + Repr(key));
}

// ---- str.format ----

std::string ApplyFormatSpec(const Value& value, std::string_view spec) {
  // [[fill]align][sign][#][0][width][grouping][.precision][type]
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  {
    size_t len = 0;
    if (!spec.empty()) utf8::Decode(spec, 0, &len);
    if (len > 0 && len < spec.size() && is_align(spec[len])) {
      fill = std::string(spec.substr(0, len));
      align = spec[len];
      i = len + 1;
    } else if (!spec.empty() && is_align(spec[0])) {
      align = spec[0];
      i = 1;
    }
  }
  char sign = '-';
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  bool alternate = false;
  if (i < spec.size() && spec[i] == '#') {
    alternate = true;
    ++i;
  }
  if (i < spec.size() && spec[i] == '0') {
    if (align == 0) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  int64_t width = 0;
  while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9')
    width = width * 10 + (spec[i++] - '0');
  char grouping = 0;
  if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) grouping = spec[i++];
  int precision = -1;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    precision = 0;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
      precision = precision * 10 + (spec[i++] - '0');
    }
  }
  char type = 0;
  if (i < spec.size()) type = spec[i++];
  if (i != spec.size()) Fail("Invalid format specifier '" + std::string(spec) + "'");
  if (width > 1'000'000) Fail("format width too large");

  std::string body;
  std::string sign_text;
  bool numeric = false;
  if (value.is_string() || value.is_undefined() || value.is_none() || value.is_list() ||
      value.is_dict() || (value.is_bool() && type == 0)) {
    if (type != 0 && type != 's') {
      Fail("Unknown format code '" + std::string(1, type) + "' for object of type '" +
           std::string(TypeName(value)) + "'");
    }
    body = ToStr(value);
    if (precision >= 0) {
      std::vector<uint32_t> cps = utf8::ToCodePoints(body);
      if (static_cast<int>(cps.size()) > precision) {
        body = SubstrByCodePoints(cps, 0, precision);
      }
    }
    if (align == 0) align = '<';
  } else if (value.is_number()) {
    numeric = true;
    if (align == 0) align = '>';
    bool integer_type = type == 'd' || type == 'b' || type == 'o' || type == 'x' || type == 'X' ||
                        type == 'c' || type == 'n';
    if (!value.is_float() && (type == 0 || integer_type)) {
      int64_t n = value.IntValue();
      uint64_t magnitude = n < 0 ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      if (n < 0)
        sign_text = "-";
      else if (sign == '+')
        sign_text = "+";
      else if (sign == ' ')
        sign_text = " ";
      if (type == 'c') {
        utf8::Append(static_cast<uint32_t>(n), &body);
        sign_text.clear();
      } else if (type == 'b' || type == 'o' || type == 'x' || type == 'X') {
        int base = type == 'b' ? 2 : (type == 'o' ? 8 : 16);
        const char* digits = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
        do {
          body.insert(body.begin(), digits[magnitude % static_cast<uint64_t>(base)]);
          magnitude /= static_cast<uint64_t>(base);
        } while (magnitude != 0);
        if (alternate) sign_text += std::string("0") + type;
      } else {
        body = std::to_string(magnitude);
      }
    } else {
      double f = value.FloatValue();
      if (std::signbit(f) && !std::isnan(f))
        sign_text = "-";
      else if (sign == '+')
        sign_text = "+";
      else if (sign == ' ')
        sign_text = " ";
      f = std::fabs(f);
      char buf[512];
      if (type == 0 && precision < 0) {
        body = FloatRepr(f);
      } else {
        char t = type == 0 ? 'g' : type;
        bool percent = t == '%';
        if (percent) {
          f *= 100;
          t = 'f';
        }
        if (t != 'f' && t != 'F' && t != 'e' && t != 'E' && t != 'g' && t != 'G') {
          Fail("Unknown format code '" + std::string(1, type) + "' for object of type 'float'");
        }
        int p = precision < 0 ? 6 : std::min(precision, 300);
        std::string fmt = std::string("%") + (alternate ? "#" : "") + ".*" + t;
        std::snprintf(buf, sizeof(buf), fmt.c_str(), p, f);
        body = buf;
        if (type == 0 && body.find_first_of(".e") == std::string::npos && !std::isinf(f) &&
            !std::isnan(f)) {
          body += ".0";  // Python's general format without a type keeps a decimal point
        }
        if (percent) body += '%';
      }
    }
    if (grouping != 0) {
      size_t end = body.find_first_of(".eE%");
      if (end == std::string::npos) end = body.size();
      for (int64_t k = static_cast<int64_t>(end) - 3; k > 0; k -= 3) {
        body.insert(static_cast<size_t>(k), 1, grouping);
      }
    }
  } else {
    body = ToStr(value);
    if (align == 0) align = '<';
  }
  auto len = static_cast<int64_t>(utf8::Length(sign_text) + utf8::Length(body));
  int64_t pad = width > len ? width - len : 0;
  auto repeat = [&fill](int64_t n) {
    std::string s;
    for (int64_t k = 0; k < n; ++k) s += fill;
    return s;
  };
  switch (align) {
    case '<':
      return sign_text + body + repeat(pad);
    case '>':
      return repeat(pad) + sign_text + body;
    case '^':
      return repeat(pad / 2) + sign_text + body + repeat(pad - pad / 2);
    case '=':
      if (!numeric) Fail("'=' alignment not allowed in string format specifier");
      return sign_text + repeat(pad) + body;
  }
  return sign_text + body;
}

std::string StrFormat(Interpreter& interp, std::string_view format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false, used_manual = false;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      Fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string_view::npos) Fail("Single '{' encountered in format string");
    std::string_view field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string_view spec;
    if (size_t colon = field.find(':'); colon != std::string_view::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    char conversion = 0;
    if (size_t bang = field.find('!'); bang != std::string_view::npos) {
      if (bang + 2 != field.size()) Fail("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field = field.substr(0, bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string_view head = field.substr(0, name_end);
    Value value;
    if (head.empty()) {
      if (used_manual)
        Fail("cannot switch from manual field specification to automatic field numbering");
      used_auto = true;
      if (auto_index >= args.positional.size())
        Fail("Replacement index " + std::to_string(auto_index) +
             " out of range for positional args tuple");
      value = args.positional[auto_index++];
    } else if (std::all_of(head.begin(), head.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      if (used_auto)
        Fail("cannot switch from automatic field numbering to manual field specification");
      used_manual = true;
      size_t index = std::stoul(std::string(head));
      if (index >= args.positional.size())
        Fail("Replacement index " + std::string(head) + " out of range for positional args tuple");
      value = args.positional[index];
    } else {
      auto it = std::find_if(args.keyword.begin(), args.keyword.end(),
                             [&](const auto& kv) { return kv.first == head; });
      if (it == args.keyword.end()) Fail("'" + std::string(head) + "'");
      value = it->second;
    }
    // .attr and [key] accessors
    std::string_view rest =
        name_end == std::string_view::npos ? std::string_view() : field.substr(name_end);
    while (!rest.empty()) {
      if (rest[0] == '.') {
        size_t end = rest.find_first_of(".[", 1);
        value = GetAttribute(value, rest.substr(1, end - 1));
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
      } else {
        size_t end = rest.find(']');
        if (end == std::string_view::npos) Fail("Missing ']' in format string");
        std::string_view key = rest.substr(1, end - 1);
        bool digits = !key.empty() && std::all_of(key.begin(), key.end(),
                                                  [](char d) { return d >= '0' && d <= '9'; });
        value = GetItem(
            value, digits ? Value(static_cast<int64_t>(std::stoll(std::string(key)))) : Value(key));
        rest = rest.substr(end + 1);
      }
    }
    if (value.is_undefined()) value.FailUndefined();
    if (conversion == 'r' || conversion == 'a') {
      value = Value(Repr(value));
    } else if (conversion == 's') {
      value = Value(ToStr(value));
    } else if (conversion != 0) {
      Fail(std::string("Unknown conversion specifier ") + conversion);
    }
    out += ApplyFormatSpec(value, spec);
    interp.ChargeString(out.size());
  }
  return out;
}

}  // namespace yunzhi::engine::jinja
