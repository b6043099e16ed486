// The public face of the chat-template interpreter: parse once, render many times.
// TemplateErrors thrown inside the interpreter end here and become Result errors.

#include "yunzhi/engine/chat_template.h"

#include <new>

#include "engine/jinja/ast.h"
#include "engine/jinja/evaluator.h"
#include "engine/jinja/lexer.h"
#include "engine/jinja/parser.h"

namespace yunzhi::engine {

struct ChatTemplate::Impl {
  std::string source;
  std::string normalized;  // what token offsets refer to
  jinja::StmtList body;
  ChatTemplateLimits limits;
};

namespace {

constexpr int kMaxInputDepth = 256;

// ChatML, the format Hugging Face used for models without a template.
constexpr std::string_view kChatMlSource =
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
    "{%- if message['content'] is string -%}\n"
    "{{- message['content'] -}}\n"
    "{%- elif message['content'] is iterable -%}\n"
    "{%- for part in message['content'] if part is mapping and part['type'] == 'text' -%}\n"
    "{{- part['text'] -}}\n"
    "{%- endfor -%}\n"
    "{%- endif -%}\n"
    "{{- '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n";

std::string Where(const std::string& normalized, uint32_t offset) {
  if (offset == jinja::kNoOffset) return "";
  jinja::SourcePosition p = jinja::PositionOf(normalized, offset);
  return " at " + std::to_string(p.line) + ":" + std::to_string(p.column);
}

jinja::Value ToJinja(const TemplateValue& v, int depth) {
  if (depth > kMaxInputDepth) {
    throw jinja::TemplateError(
        jinja::TemplateError::Kind::kLimit,
        "input data is nested more than " + std::to_string(kMaxInputDepth) + " levels deep");
  }
  switch (v.kind()) {
    case TemplateValue::Kind::kNull:
      return jinja::Value::None();
    case TemplateValue::Kind::kBool:
      return jinja::Value(v.as_bool());
    case TemplateValue::Kind::kInt:
      return jinja::Value(v.as_int());
    case TemplateValue::Kind::kFloat:
      return jinja::Value(v.as_float());
    case TemplateValue::Kind::kString:
      return jinja::Value(v.as_string());
    case TemplateValue::Kind::kArray: {
      jinja::ValueList items;
      items.reserve(v.as_array().size());
      for (const TemplateValue& item : v.as_array()) items.push_back(ToJinja(item, depth + 1));
      return jinja::Value::List(std::move(items));
    }
    case TemplateValue::Kind::kObject: {
      jinja::Dict dict;
      for (const auto& [key, item] : v.as_object()) dict.Set(key, ToJinja(item, depth + 1));
      return jinja::Value::FromDict(std::move(dict));
    }
  }
  return jinja::Value::None();
}

}  // namespace

Result<ChatTemplate> ChatTemplate::Parse(std::string source, const ChatTemplateLimits& limits) {
  if (source.size() > limits.max_source_bytes) {
    return Error(Code::kInvalidArgument,
                 "chat template is " + std::to_string(source.size()) +
                     " bytes, more than the limit of " + std::to_string(limits.max_source_bytes),
                 "", "chat_template_limit");
  }
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source);
  impl->normalized = jinja::NormalizeSource(impl->source);
  impl->limits = limits;
  try {
    std::vector<jinja::Token> tokens = jinja::Tokenize(impl->normalized);
    impl->body = jinja::Parse(tokens, limits.max_nesting);
  } catch (const jinja::TemplateError& e) {
    return Error(
        Code::kInvalidArgument,
        "chat template syntax error" + Where(impl->normalized, e.offset()) + ": " + e.message(), "",
        "chat_template_syntax_error");
  }
  return ChatTemplate(std::move(impl));
}

const ChatTemplate& ChatTemplate::ChatMlFallback() {
  static const ChatTemplate* const kTemplate = [] {
    Result<ChatTemplate> parsed = Parse(std::string(kChatMlSource));
    YZ_CHECK(parsed.has_value());
    return new ChatTemplate(std::move(*parsed));
  }();
  return *kTemplate;
}

const std::string& ChatTemplate::source() const { return impl_->source; }

Result<std::string> ChatTemplate::Render(const ChatInput& input) const {
  const Impl& impl = *impl_;
  jinja::Limits limits;
  limits.max_steps = impl.limits.max_steps;
  limits.max_depth = impl.limits.max_depth;
  limits.max_call_depth = impl.limits.max_call_depth;
  limits.max_output_bytes = impl.limits.max_output_bytes;
  jinja::Interpreter interp(limits, input.now.value_or(std::chrono::system_clock::now()));
  try {
    jinja::Dict globals;
    globals.Set("messages", ToJinja(input.messages, 0));
    globals.Set("tools", ToJinja(input.tools, 0));
    globals.Set("documents", ToJinja(input.documents, 0));
    globals.Set("add_generation_prompt", jinja::Value(input.add_generation_prompt));
    if (input.bos_token) globals.Set("bos_token", jinja::Value(*input.bos_token));
    if (input.eos_token) globals.Set("eos_token", jinja::Value(*input.eos_token));
    for (const auto& [key, value] : input.extra) globals.Set(key, ToJinja(value, 0));
    return interp.Render(impl.body, globals);
  } catch (const jinja::TemplateError& e) {
    switch (e.kind()) {
      case jinja::TemplateError::Kind::kRaised:
        return Error(Code::kInvalidArgument, e.message(), "messages", "chat_template_exception");
      case jinja::TemplateError::Kind::kLimit:
        return Error(Code::kInvalidArgument,
                     "chat template limit exceeded" + Where(impl.normalized, e.offset()) + ": " +
                         e.message(),
                     "messages", "chat_template_limit");
      default:
        return Error(
            Code::kInvalidArgument,
            "chat template error" + Where(impl.normalized, e.offset()) + ": " + e.message(),
            "messages", "chat_template_error");
    }
  } catch (const std::bad_alloc&) {
    return Error(Code::kInternal, "out of memory while rendering the chat template");
  }
}

}  // namespace yunzhi::engine
