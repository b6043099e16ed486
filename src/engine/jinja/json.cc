#include "engine/jinja/json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "engine/jinja/utf8.h"

namespace yunzhi::engine::jinja {
namespace {

void AppendUnicodeEscape(uint32_t unit, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit & 0xFFFF);
  *out += buf;
}

struct Writer {
  const JsonDumpOptions& options;
  std::string item_separator;
  std::string* out;

  void Newline(size_t level) {
    *out += '\n';
    for (size_t i = 0; i < level; ++i) *out += *options.indent;
  }

  void Write(const Value& v, size_t level) {
    switch (v.kind()) {
      case Value::Kind::kNone:
        *out += "null";
        return;
      case Value::Kind::kBool:
        *out += v.as_bool() ? "true" : "false";
        return;
      case Value::Kind::kInt:
        *out += std::to_string(v.as_int());
        return;
      case Value::Kind::kFloat: {
        double f = v.as_float();
        if (std::isnan(f)) {
          *out += "NaN";
        } else if (std::isinf(f)) {
          *out += f > 0 ? "Infinity" : "-Infinity";
        } else {
          *out += FloatRepr(f);
        }
        return;
      }
      case Value::Kind::kString:
        AppendJsonString(v.as_string(), options.ensure_ascii, out);
        return;
      case Value::Kind::kList: {
        const ValueList& items = v.as_list();
        if (items.empty()) {
          *out += "[]";
          return;
        }
        *out += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i > 0) *out += item_separator;
          if (options.indent) Newline(level + 1);
          Write(items[i], level + 1);
        }
        if (options.indent) Newline(level);
        *out += ']';
        return;
      }
      case Value::Kind::kDict: {
        const Dict& dict = v.as_dict();
        if (dict.empty()) {
          *out += "{}";
          return;
        }
        std::vector<const Dict::Entry*> entries;
        entries.reserve(dict.size());
        for (const auto& e : dict.entries()) entries.push_back(&e);
        if (options.sort_keys) {
          std::stable_sort(
              entries.begin(), entries.end(),
              [](const Dict::Entry* a, const Dict::Entry* b) { return a->first < b->first; });
        }
        *out += '{';
        for (size_t i = 0; i < entries.size(); ++i) {
          if (i > 0) *out += item_separator;
          if (options.indent) Newline(level + 1);
          AppendJsonString(entries[i]->first, options.ensure_ascii, out);
          *out += options.key_separator;
          Write(entries[i]->second, level + 1);
        }
        if (options.indent) Newline(level);
        *out += '}';
        return;
      }
      default:
        Fail("Object of type " + std::string(TypeName(v)) + " is not JSON serializable");
    }
  }
};

}  // namespace

void AppendJsonString(std::string_view text, bool ensure_ascii, std::string* out) {
  *out += '"';
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len) {
    uint32_t cp = utf8::Decode(text, pos, &len);
    switch (cp) {
      case '"':
        *out += "\\\"";
        continue;
      case '\\':
        *out += "\\\\";
        continue;
      case '\n':
        *out += "\\n";
        continue;
      case '\r':
        *out += "\\r";
        continue;
      case '\t':
        *out += "\\t";
        continue;
      case '\b':
        *out += "\\b";
        continue;
      case '\f':
        *out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20) {
      AppendUnicodeEscape(cp, out);
    } else if (!ensure_ascii || cp < 0x7F) {
      out->append(text.substr(pos, len));
    } else if (cp < 0x10000) {
      AppendUnicodeEscape(cp, out);
    } else {
      uint32_t v = cp - 0x10000;
      AppendUnicodeEscape(0xD800 | (v >> 10), out);
      AppendUnicodeEscape(0xDC00 | (v & 0x3FF), out);
    }
  }
  *out += '"';
}

std::string JsonDumps(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  Writer writer{options, options.item_separator.value_or(options.indent ? "," : ", "), &out};
  writer.Write(value, 0);
  return out;
}

}  // namespace yunzhi::engine::jinja
