// TemplateValue: the JSON-like data a chat template is rendered with.
//
// Chat templates consume the request as Hugging Face passes it to Jinja2: plain JSON data
// (messages, tool schemas, tool-call arguments). TemplateValue is that data -- null, bool,
// 64-bit integer, double, UTF-8 string, array, object -- with two properties templates depend
// on: objects keep insertion order (`tojson` prints keys in the order the client sent them),
// and integers stay distinct from floats (`3` prints as "3", `3.0` as "3.0").
//
// Thread safety: a plain value type; const access from many threads is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

class TemplateValue {
 public:
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kArray, kObject };
  using Array = std::vector<TemplateValue>;
  // Insertion-ordered key/value pairs. Keys should be unique; when they are not, the template
  // sees the last value at the position of the first (as Python's json.loads does).
  using Object = std::vector<std::pair<std::string, TemplateValue>>;

  TemplateValue() = default;                                    // null
  TemplateValue(std::nullptr_t) {}                              // NOLINT
  TemplateValue(bool b) : data_(b) {}                           // NOLINT
  TemplateValue(int i) : data_(static_cast<int64_t>(i)) {}      // NOLINT
  TemplateValue(int64_t i) : data_(i) {}                        // NOLINT
  TemplateValue(double d) : data_(d) {}                         // NOLINT
  TemplateValue(std::string s) : data_(std::move(s)) {}         // NOLINT
  TemplateValue(std::string_view s) : data_(std::string(s)) {}  // NOLINT
  TemplateValue(const char* s) : data_(std::string(s)) {}       // NOLINT
  TemplateValue(Array a) : data_(std::move(a)) {}               // NOLINT
  TemplateValue(Object o) : data_(std::move(o)) {}              // NOLINT

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_array() const { return kind() == Kind::kArray; }
  bool is_object() const { return kind() == Kind::kObject; }

  // Accessors. Precondition: the matching kind (std::bad_variant_access otherwise).
  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const Array& as_array() const { return std::get<Array>(data_); }
  Array& as_array() { return std::get<Array>(data_); }
  const Object& as_object() const { return std::get<Object>(data_); }
  Object& as_object() { return std::get<Object>(data_); }

  // Object helpers. Find returns the value of the first entry with `key`, or null when there is
  // none or this is not an object. Set replaces the value of an existing key in place or appends
  // (precondition: is_object()); it returns the stored value.
  const TemplateValue* Find(std::string_view key) const;
  TemplateValue& Set(std::string key, TemplateValue value);

  // Parses JSON text (RFC 8259; nesting up to 512 levels). Integers that fit in 64 bits become
  // kInt, other numbers kFloat. Errors: kInvalidArgument with the byte offset of the problem.
  static Result<TemplateValue> ParseJson(std::string_view text);

  // Compact JSON, formatted like Python's json.dumps(value, ensure_ascii=False).
  std::string ToJson() const;

  friend bool operator==(const TemplateValue& a, const TemplateValue& b) {
    return a.data_ == b.data_;
  }

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> data_;
};

}  // namespace yunzhi::engine
