// Shared by the interpreter's unit tests: a template, its variables, and what Jinja2 renders.
//
// The expected strings in the case tables were produced by Python's Jinja2 3.1.2 (Debian 12)
// set up exactly as tests/reference/render_chat_template.py sets it up (Hugging Face's
// environment, strftime_now fixed at 2024-07-26 09:05:03).
#pragma once

#include <ostream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "yunzhi/base/status.h"

namespace yunzhi::engine::jinja_test {

struct RenderCase {
  const char* name;
  const char* source;
  const char* vars_json;  // a JSON object: the template's variables
  bool ok;                // false: Jinja2 raises, so Render must fail
  const char* expected;   // the rendering when ok
};

std::ostream& operator<<(std::ostream& os, const RenderCase& c);
std::string CaseName(const testing::TestParamInfo<RenderCase>& info);

// Renders `source` with the variables of `vars_json` (through the public ChatTemplate API, at
// the fixed time the expectations were made with).
Result<std::string> RenderWithVars(std::string_view source, std::string_view vars_json = "{}");

// Renders the case and checks the result against Jinja2's.
void ExpectRendersLikeJinja2(const RenderCase& c);

}  // namespace yunzhi::engine::jinja_test
