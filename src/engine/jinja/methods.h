// Attribute and item access (`x.name`, `x[key]`) with the rules of Jinja2's immutable sandbox,
// and the Python methods of str, dict and list that templates call.
//
// `x.name` looks for a Python attribute first (so `d.items` is the method even when the dict
// has an "items" key) and then for an item; `x[key]` looks for an item first and then, for a
// string key, an attribute. What is not found is undefined, except that any access on an
// undefined value fails ("'x' is undefined"), as with Jinja2's default Undefined. Methods that
// would mutate a list or dict are refused (the sandbox's SecurityError).
//
// Implemented methods:
//   str:  capitalize casefold center count endswith find format index isalnum isalpha isdigit
//         isdecimal isnumeric islower isspace isupper join ljust lower lstrip partition
//         removeprefix removesuffix replace rfind rindex rjust rpartition rsplit rstrip split
//         splitlines startswith strip swapcase title upper zfill
//   dict: copy get items keys values
//   list, tuple: count index (and copy for lists)
// Other Python methods exist (a call fails with "not supported"); `x.items()` etc. return lists.
//
// Thread safety: pure functions.
#pragma once

#include <string_view>

#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {

Value GetAttribute(const Value& object, std::string_view name);
Value GetItem(const Value& object, const Value& key);

// Python's `str.format(*args, **kwargs)` (auto and explicit field numbering, names, `.attr`
// and `[key]` in fields, !s/!r conversions, and format specs [[fill]align][sign][0][width][,]
// [.precision][type]).
std::string StrFormat(Interpreter& interp, std::string_view format, const CallArgs& args);

// Applies a Python format spec (the part after ':' in a str.format field) to a value.
std::string ApplyFormatSpec(const Value& value, std::string_view spec);

}  // namespace yunzhi::engine::jinja
