#include "engine/jinja/render_case.h"

#include <chrono>

#include "yunzhi/engine/chat_template.h"

namespace yunzhi::engine::jinja_test {

std::ostream& operator<<(std::ostream& os, const RenderCase& c) {
  return os << c.name << ": " << TemplateValue(c.source).ToJson();
}

std::string CaseName(const testing::TestParamInfo<RenderCase>& info) { return info.param.name; }

Result<std::string> RenderWithVars(std::string_view source, std::string_view vars_json) {
  YZ_ASSIGN_OR_RETURN(ChatTemplate tpl, ChatTemplate::Parse(std::string(source)));
  YZ_ASSIGN_OR_RETURN(TemplateValue vars, TemplateValue::ParseJson(vars_json));
  ChatInput input;
  input.extra = vars.as_object();
  input.now = std::chrono::system_clock::time_point(std::chrono::seconds(1721984703));
  return tpl.Render(input);
}

void ExpectRendersLikeJinja2(const RenderCase& c) {
  Result<std::string> out = RenderWithVars(c.source, c.vars_json);
  if (c.ok) {
    ASSERT_TRUE(out.has_value()) << out.error().ToString();
    EXPECT_EQ(*out, c.expected);
  } else {
    EXPECT_FALSE(out.has_value()) << "Jinja2 raises, but we render: " << *out;
  }
}

}  // namespace yunzhi::engine::jinja_test
