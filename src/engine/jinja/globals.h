// The global names every chat template sees, besides the caller's variables:
//  - Jinja2's sandbox globals: range (at most 100,000 items, as the sandbox allows),
//    namespace, dict, joiner;
//  - Hugging Face's: raise_exception(message) -- ends the render with `message` as the error --
//    and strftime_now(format) -- the render's time (Interpreter::now()) formatted like Python's
//    datetime.strftime, in UTC, with the C locale's English names.
//
// Thread safety: AddGlobals only writes the given scope.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "engine/jinja/evaluator.h"

namespace yunzhi::engine::jinja {

void AddGlobals(Scope& scope);

// Python's `datetime.strftime(format)` for the UTC time `time`: %a %A %b %B %c %C %d %D %e %F
// %g %G %h %H %I %j %k %l %m %M %n %p %P %r %R %s %S %t %T %u %U %V %w %W %x %X %y %Y %z %Z
// %%, with glibc's `-` (no padding) and `_` (space padding) flags. Fails on other directives.
std::string FormatTime(std::string_view format, std::chrono::system_clock::time_point time);

}  // namespace yunzhi::engine::jinja
