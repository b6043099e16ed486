#include "yunzhi/engine/template_value.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "engine/jinja/json.h"
#include "engine/jinja/utf8.h"

namespace yunzhi::engine {

const TemplateValue* TemplateValue::Find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : as_object()) {
    if (k == key) return &v;
  }
  return nullptr;
}

TemplateValue& TemplateValue::Set(std::string key, TemplateValue value) {
  Object& object = as_object();
  for (auto& [k, v] : object) {
    if (k == key) {
      v = std::move(value);
      return v;
    }
  }
  object.emplace_back(std::move(key), std::move(value));
  return object.back().second;
}

namespace {

constexpr int kMaxJsonDepth = 512;

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}

  Result<TemplateValue> Run() {
    TemplateValue value;
    if (!ParseValue(&value, 0)) return Failure();
    SkipSpace();
    if (pos_ != s_.size()) {
      error_ = "unexpected trailing characters";
      return Failure();
    }
    return value;
  }

 private:
  Error Failure() const {
    return InvalidArgumentError("invalid JSON at byte " + std::to_string(pos_) + ": " + error_);
  }

  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Fail("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool ParseValue(TemplateValue* out, int depth) {
    if (depth > kMaxJsonDepth) return Fail("nested too deeply");
    SkipSpace();
    if (pos_ >= s_.size()) return Fail("unexpected end of input");
    char c = s_[pos_];
    switch (c) {
      case 'n':
        *out = TemplateValue();
        return Literal("null");
      case 't':
        *out = TemplateValue(true);
        return Literal("true");
      case 'f':
        *out = TemplateValue(false);
        return Literal("false");
      case '"': {
        std::string str;
        if (!ParseString(&str)) return false;
        *out = TemplateValue(std::move(str));
        return true;
      }
      case '[': {
        ++pos_;
        TemplateValue::Array array;
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          *out = TemplateValue(std::move(array));
          return true;
        }
        for (;;) {
          TemplateValue item;
          if (!ParseValue(&item, depth + 1)) return false;
          array.push_back(std::move(item));
          SkipSpace();
          if (pos_ < s_.size() && s_[pos_] == ',') {
            ++pos_;
            continue;
          }
          if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            break;
          }
          return Fail("expected ',' or ']'");
        }
        *out = TemplateValue(std::move(array));
        return true;
      }
      case '{': {
        ++pos_;
        TemplateValue object = TemplateValue::Object{};
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == '}') {
          ++pos_;
          *out = std::move(object);
          return true;
        }
        for (;;) {
          SkipSpace();
          if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a string key");
          std::string key;
          if (!ParseString(&key)) return false;
          SkipSpace();
          if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
          ++pos_;
          TemplateValue item;
          if (!ParseValue(&item, depth + 1)) return false;
          object.Set(std::move(key), std::move(item));
          SkipSpace();
          if (pos_ < s_.size() && s_[pos_] == ',') {
            ++pos_;
            continue;
          }
          if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            break;
          }
          return Fail("expected ',' or '}'");
        }
        *out = std::move(object);
        return true;
      }
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
        return Fail("unexpected character");
    }
  }

  bool ParseNumber(TemplateValue* out) {
    size_t start = pos_;
    auto digits = [this] {
      size_t begin = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > begin;
    };
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return Fail("invalid number");
    }
    bool integer = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integer = false;
      if (!digits()) return Fail("invalid number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integer = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return Fail("invalid number");
    }
    std::string_view text = s_.substr(start, pos_ - start);
    if (integer) {
      int64_t value = 0;
      auto res = std::from_chars(text.data(), text.data() + text.size(), value);
      if (res.ec == std::errc() && res.ptr == text.data() + text.size()) {
        *out = TemplateValue(value);
        return true;
      }
    }
    *out = TemplateValue(std::strtod(std::string(text).c_str(), nullptr));
    return true;
  }

  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return Fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Fail("invalid \\u escape");
      }
    }
    *out = v;
    return true;
  }

  bool ParseString(std::string* out) {
    ++pos_;  // opening quote
    for (;;) {
      if (pos_ >= s_.size()) return Fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return Fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(pos_, 2) == "\\u") {
            size_t save = pos_;
            pos_ += 2;
            uint32_t low = 0;
            if (!Hex4(&low)) return false;
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = save;
            }
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogate
          jinja::utf8::Append(cp, out);
          break;
        }
        default:
          return Fail("invalid escape");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

void WriteJson(const TemplateValue& v, std::string* out) {
  switch (v.kind()) {
    case TemplateValue::Kind::kNull:
      *out += "null";
      break;
    case TemplateValue::Kind::kBool:
      *out += v.as_bool() ? "true" : "false";
      break;
    case TemplateValue::Kind::kInt:
      *out += std::to_string(v.as_int());
      break;
    case TemplateValue::Kind::kFloat:
      if (std::isnan(v.as_float())) {
        *out += "NaN";
      } else if (std::isinf(v.as_float())) {
        *out += v.as_float() > 0 ? "Infinity" : "-Infinity";
      } else {
        *out += jinja::FloatRepr(v.as_float());
      }
      break;
    case TemplateValue::Kind::kString:
      jinja::AppendJsonString(v.as_string(), false, out);
      break;
    case TemplateValue::Kind::kArray: {
      *out += '[';
      bool first = true;
      for (const TemplateValue& item : v.as_array()) {
        if (!first) *out += ", ";
        first = false;
        WriteJson(item, out);
      }
      *out += ']';
      break;
    }
    case TemplateValue::Kind::kObject: {
      *out += '{';
      bool first = true;
      for (const auto& [key, item] : v.as_object()) {
        if (!first) *out += ", ";
        first = false;
        jinja::AppendJsonString(key, false, out);
        *out += ": ";
        WriteJson(item, out);
      }
      *out += '}';
      break;
    }
  }
}

}  // namespace

Result<TemplateValue> TemplateValue::ParseJson(std::string_view text) {
  return JsonParser(text).Run();
}

std::string TemplateValue::ToJson() const {
  std::string out;
  WriteJson(*this, &out);
  return out;
}

}  // namespace yunzhi::engine
