// The built-in Jinja2 tests (`value is name(args)`): defined, none, string, mapping, iterable,
// sequence, number, integer, float, boolean, true, false, odd, even, divisibleby, lower, upper,
// callable, sameas, in, escaped, filter, test, and the comparison tests (eq/equalto/==, ne, lt,
// le, gt, ge and their aliases).
//
// Thread safety: pure functions.
#pragma once

#include <string_view>

#include "engine/jinja/ast.h"

namespace yunzhi::engine::jinja {

// The test called `name`, or null.
TestFn FindTest(std::string_view name);

}  // namespace yunzhi::engine::jinja
