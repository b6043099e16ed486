// Python's operators on template values: arithmetic, unary minus/plus, slicing.
//
// Integers are 64-bit; where Python would switch to a big integer we fail with an "integer
// overflow" error instead. Everything else (float formatting, floor division and modulo signs,
// string and list repetition, the TypeError cases) follows CPython.
//
// Thread safety: pure functions, except that they charge the Interpreter's step budget.
#pragma once

#include <optional>

#include "engine/jinja/ast.h"
#include "engine/jinja/value.h"

namespace yunzhi::engine::jinja {

Value BinaryOperation(Interpreter& interp, BinaryOp op, const Value& left, const Value& right);
Value Negate(const Value& operand);
Value UnaryPlus(const Value& operand);

// `value[start:stop:step]` for lists, tuples and strings (absent parts are empty). Fails for a
// zero step or non-integer bounds; slicing other values gives undefined, as in Jinja2.
Value SliceValue(const Value& value, const std::optional<Value>& start,
                 const std::optional<Value>& stop, const std::optional<Value>& step);

// Python's `format % args` for the `%` operator and the `format` filter: %s %r %d %i %f %F %e
// %E %g %G %x %X %o %c %% with flags, width and precision; `args` is a tuple, a dict (for
// %(name)s) or a single value.
std::string PercentFormat(Interpreter& interp, std::string_view format, const Value& args);

}  // namespace yunzhi::engine::jinja
