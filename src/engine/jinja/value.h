// The value model of the chat-template interpreter: what a Jinja2 expression evaluates to.
//
// Values follow Python's semantics because the reference is Jinja2 running on Python: `str()` of
// a list is its Python repr, `1 == 1.0 == true`, `"a" + 1` is a TypeError, `{}` keeps insertion
// order. Undefined is a value of its own (Jinja2's default `Undefined`): printing it gives "",
// it is falsy and iterates as empty, and most other uses fail with "'x' is undefined".
//
// Lists, dicts and strings are immutable and shared (copying a Value is cheap); the only mutable
// things a template can make are namespaces (`namespace()`), as in Jinja2's immutable sandbox.
//
// Errors inside the interpreter are thrown as TemplateError (they always end the render) and
// turned into Result values at the public boundary, chat_template.cc; nothing else throws them.
//
// Thread safety: a Value that holds no namespace may be read from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace yunzhi::engine::jinja {

class Interpreter;
class Value;
class Dict;
class Callable;
class Object;

using ValueList = std::vector<Value>;

inline constexpr uint32_t kNoOffset = UINT32_MAX;

// An error that ends parsing or rendering. `offset` is a byte offset into the (normalized)
// template source, or kNoOffset when the thrower does not know it; the interpreter fills it in.
class TemplateError : public std::exception {
 public:
  enum class Kind {
    kSyntax,   // the template does not parse
    kRuntime,  // a type error, an undefined value used, a bad filter argument ...
    kRaised,   // the template called raise_exception(message)
    kLimit,    // a configured limit (steps, depth, output size) was exceeded
  };

  TemplateError(Kind kind, std::string message, uint32_t offset = kNoOffset)
      : kind_(kind), message_(std::move(message)), offset_(offset) {}

  const char* what() const noexcept override { return message_.c_str(); }
  Kind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  uint32_t offset() const { return offset_; }
  void set_offset(uint32_t offset) { offset_ = offset; }

 private:
  Kind kind_;
  std::string message_;
  uint32_t offset_;
};

// Throws a runtime TemplateError.
[[noreturn]] void Fail(std::string message);

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // a Python list, or a tuple when is_tuple()
    kDict,
    kCallable,
    kObject,  // namespace, loop
  };

  // Undefined, with no hint.
  Value() = default;
  Value(bool b) : data_(b) {}                       // NOLINT
  Value(int64_t i) : data_(i) {}                    // NOLINT
  Value(int i) : data_(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double f) : data_(f) {}                     // NOLINT
  Value(std::string s)
      : data_(StringRef{std::make_shared<const std::string>(std::move(s))}) {}  // NOLINT
  Value(std::string_view s) : Value(std::string(s)) {}                          // NOLINT
  Value(const char* s) : Value(std::string(s)) {}                               // NOLINT

  // An undefined value; `message` says what was undefined ("'x' is undefined") and is the
  // error raised when the value is used.
  static Value Undefined(std::string message);
  static Value None();
  // A markupsafe.Markup string, as `|safe` and `|escape` make: it prints like any string, but
  // `+` with a plain string HTML-escapes the plain one, and its repr is Markup('...').
  static Value Markup(std::string s);
  static Value List(ValueList items);
  static Value Tuple(ValueList items);
  static Value FromDict(std::shared_ptr<const Dict> dict);
  static Value FromDict(Dict dict);
  static Value FromCallable(std::shared_ptr<const Callable> callable);
  static Value FromObject(std::shared_ptr<Object> object);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // bool, int or float (Python's numbers.Number, which includes bool).
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_markup() const { return is_string() && std::get<StringRef>(data_).markup; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_tuple() const { return is_list() && std::get<ListRef>(data_).tuple; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_callable() const { return kind() == Kind::kCallable; }
  bool is_object() const { return kind() == Kind::kObject; }

  // Accessors; precondition: the matching kind.
  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  const std::string& as_string() const { return *std::get<StringRef>(data_).text; }
  const ValueList& as_list() const { return *std::get<ListRef>(data_).items; }
  const Dict& as_dict() const { return *std::get<DictRef>(data_); }
  const Callable& as_callable() const { return *std::get<CallableRef>(data_); }
  Object& as_object() const { return *std::get<ObjectRef>(data_); }
  const std::shared_ptr<Object>& object_ptr() const { return std::get<ObjectRef>(data_); }
  // The message of an undefined value.
  std::string undefined_message() const;

  // bool and int as int64 (precondition: is_bool() || is_int()).
  int64_t IntValue() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  // Any number as double (precondition: is_number()).
  double FloatValue() const { return is_float() ? as_float() : static_cast<double>(IntValue()); }

  // Throws the undefined value's error (precondition: is_undefined()).
  [[noreturn]] void FailUndefined() const;

 private:
  struct UndefinedRef {
    std::shared_ptr<const std::string> message;
  };
  struct NoneTag {};
  struct StringRef {
    std::shared_ptr<const std::string> text;
    bool markup = false;
  };
  struct ListRef {
    std::shared_ptr<const ValueList> items;
    bool tuple = false;
  };
  using DictRef = std::shared_ptr<const Dict>;
  using CallableRef = std::shared_ptr<const Callable>;
  using ObjectRef = std::shared_ptr<Object>;

  std::variant<UndefinedRef, NoneTag, bool, int64_t, double, StringRef, ListRef, DictRef,
               CallableRef, ObjectRef>
      data_;
};

// A string-keyed map that keeps insertion order, like a Python dict. Keys other than strings
// are not supported (templates index with strings; looking up another key finds nothing).
class Dict {
 public:
  using Entry = std::pair<std::string, Value>;

  const Value* Find(std::string_view key) const;
  // Inserts, or replaces the value in place (the key keeps its position), as Python does.
  void Set(std::string key, Value value);
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  static constexpr size_t kIndexFrom = 12;  // linear search below this size
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;  // key -> position, once size >= kIndexFrom
};

// Arguments of a call: `f(1, x=2)`.
struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Binds `args` to the parameters `names` the way Python does (positionally, then by keyword).
// Returns one entry per parameter, empty when not given. Fails on too many positional arguments,
// unknown or repeated keywords, or when one of the first `n_required` parameters is missing.
std::vector<std::optional<Value>> BindArgs(const CallArgs& args, std::string_view callee,
                                           std::initializer_list<std::string_view> names,
                                           size_t n_required = 0);

// Something callable from a template: a builtin function, a bound method, a macro.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual Value Call(Interpreter& interp, CallArgs& args) const = 0;
  // Python-ish repr, e.g. "<built-in function range>" or "<Macro 'name'>".
  virtual std::string Repr() const = 0;
};

// A namespace or loop object: attributes only.
class Object {
 public:
  virtual ~Object() = default;
  // "Namespace", "LoopContext": for messages.
  virtual std::string_view TypeName() const = 0;
  // The attribute, or undefined.
  virtual Value GetAttr(std::string_view name) const = 0;
  // Assigns an attribute; false when the object does not allow it.
  virtual bool SetAttr(std::string_view name, Value value) { return false; }
  virtual std::string Repr() const = 0;
  // Drops the values the object holds (called when a render ends, to break reference cycles
  // built through mutable objects).
  virtual void Clear() {}
};

// Python's type name of a value: "str", "int", "NoneType", "list", "dict", "tuple", ...
std::string_view TypeName(const Value& value);

// Python truthiness (undefined is false).
bool Truthy(const Value& value);

// Python `==` (numbers compare by value across bool/int/float; lists and tuples never equal;
// dicts compare as sets of pairs; undefined equals only undefined).
bool Equals(const Value& a, const Value& b);

// Python's ordering comparisons `<`, `<=`, `>`, `>=` (op names the operator): numbers, strings
// (by code point), lists/tuples lexicographically. Fails for anything else, e.g. "'<' not
// supported between instances of 'str' and 'int'".
bool Compare(const Value& a, const Value& b, std::string_view op);
inline bool LessThan(const Value& a, const Value& b, std::string_view op = "<") {
  return Compare(a, b, op == "<" ? "<" : op);
}

// Whether Python could hash the value (lists and dicts, also inside tuples, cannot).
bool IsHashable(const Value& value);

// Python `x in container` (substring for strings, key for dicts, element for lists).
bool Contains(const Value& container, const Value& item);

// Python `str(value)`, with Jinja2's undefined -> "".
std::string ToStr(const Value& value);
void AppendStr(const Value& value, std::string* out);
// Python `repr(value)`.
std::string Repr(const Value& value);
// Python `repr(float)`: "1.0", "0.1", "1e-05", "1e+16", "inf", "nan".
std::string FloatRepr(double value);
// Python `repr(str)`: quotes and escapes chosen as CPython does.
std::string StringRepr(std::string_view text);
// markupsafe.escape: & < > " ' as HTML entities.
std::string HtmlEscape(std::string_view text);

// The items of an iterable, as Python iterates them: list/tuple elements, dict keys, string
// characters; undefined iterates as empty. Fails for other values ("'int' object is not
// iterable").
ValueList Iterate(const Value& value);

// Python `len()`; undefined has length 0. Fails for values without a length.
int64_t Length(const Value& value);

}  // namespace yunzhi::engine::jinja
