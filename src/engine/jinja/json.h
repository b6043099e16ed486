// Python-compatible JSON output for the `tojson` filter.
//
// Hugging Face replaces Jinja2's HTML-safe `tojson` with plain `json.dumps(x, ensure_ascii=False,
// indent=indent, separators=separators, sort_keys=sort_keys)`, and model prompts depend on its
// exact bytes (", " and ": " separators, key order kept, non-ASCII written as is). JsonDumps
// reproduces `json.dumps` byte for byte for every value a template can build.
//
// Thread safety: pure function.
#pragma once

#include <optional>
#include <string>

#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {

struct JsonDumpOptions {
  // Escape every non-ASCII character as \uXXXX (surrogate pairs above U+FFFF).
  bool ensure_ascii = false;
  // Pretty-printing: the string repeated per nesting level; none = one line.
  std::optional<std::string> indent;
  // Python's defaults: ", " without indent, "," with indent; ": " between key and value.
  std::optional<std::string> item_separator;
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// json.dumps(value). Fails with "Object of type X is not JSON serializable" for undefined,
// callables, namespaces and loops.
std::string JsonDumps(const Value& value, const JsonDumpOptions& options = {});

// A JSON string literal of `text`, escaped as json.dumps does.
void AppendJsonString(std::string_view text, bool ensure_ascii, std::string* out);

}  // namespace yunzhi::engine::jinja
