// The built-in Jinja2 filters (`value | name(args)`).
//
// Each behaves like its Jinja2 counterpart as Hugging Face configures it; `tojson` is Hugging
// Face's override (`json.dumps` with ensure_ascii=False). Filters that produce lazy generators
// in Jinja2 (select, map, ...) return lists here, which differ only when printed directly.
//
// Thread safety: pure functions (they read the Interpreter, never shared state).
#pragma once

#include <string_view>

#include "engine/jinja/ast.h"

namespace yunzhi::engine::jinja {

// The filter called `name`, or null.
FilterFn FindFilter(std::string_view name);

}  // namespace yunzhi::engine::jinja
