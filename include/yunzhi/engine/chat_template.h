// Chat templates: turning a conversation into the prompt text a model was trained on.
//
// Every instruction-tuned model ships its own prompt format as a Jinja2 template (GGUF
// `tokenizer.chat_template`, or `chat_template` in tokenizer_config.json). ChatTemplate runs
// such templates with our own Jinja2 interpreter and renders exactly what Hugging Face
// transformers' `apply_chat_template` renders: an ImmutableSandboxedEnvironment with
// trim_blocks=True and lstrip_blocks=True, the loopcontrols extension, Hugging Face's `tojson`
// (json.dumps with ensure_ascii=False, keys in order) and its globals raise_exception and
// strftime_now. The reference test renders every template in the test data with Python's Jinja2
// and requires byte-identical output.
//
// What a template sees (as in Hugging Face): `messages`, `tools` (null when there are none),
// `documents`, `add_generation_prompt`, `bos_token` / `eos_token` when the model has them, and
// any extra variables (`enable_thinking` for Qwen3, `date_string`, ...).
//
// Supported Jinja2: the statements if/elif/else, for (loop.* variables, else, inline filter,
// break/continue), set (incl. namespace attributes and block set), macro, filter, with, raw;
// the full expression grammar; Jinja2's built-in tests and most built-in filters; Python methods
// of str/dict/list that templates use. Not supported (rejected when parsing): template loading
// (extends/include/import), call blocks, recursive loops. Integers are 64-bit.
//
// Thread safety: a ChatTemplate is immutable after Parse; copies share the parsed form, and any
// number of threads may Render the same template concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/template_value.h"

namespace yunzhi::engine {

// Bounds that keep a hostile template (templates come inside uploaded model files) from hanging
// or crashing the server. Exceeding one is a kInvalidArgument error with detail
// "chat_template_limit".
struct ChatTemplateLimits {
  // Size of the template source.
  size_t max_source_bytes = 1u << 20;
  // Static nesting of blocks and expressions in the template.
  int max_nesting = 200;
  // Work per render: loop iterations, calls, and 1 per 64 bytes of strings / per list item built.
  int64_t max_steps = 1'000'000;
  // Run-time nesting of evaluation (grows with macro recursion) and of macro calls. A level of
  // depth takes about 0.5 KiB of stack: with the defaults a render needs at most ~320 KiB.
  int max_depth = 500;
  int max_call_depth = 100;
  // Size of the rendered prompt, and of any single string built while rendering.
  size_t max_output_bytes = 16u << 20;
};

// The variables of one render.
struct ChatInput {
  // The conversation: an array of message objects in the OpenAI / Hugging Face shape:
  //   {"role": "system" | "user" | "assistant" | "tool" | ...,
  //    "content": "text" | [{"type": "text", "text": "..."}, ...] | null,
  //    "tool_calls": [{"id": "...", "type": "function",
  //                    "function": {"name": "...", "arguments": {...}}}],   (assistant)
  //    "tool_call_id": "...", "name": "...",                                 (tool)
  //    "reasoning_content": "..."}                                           (assistant)
  // Tool-call arguments should be objects (parse the OpenAI JSON string first): templates print
  // them with `tojson` or iterate over them. Leave out keys the client did not send rather than
  // setting them to null: templates test `'tool_calls' in message` and `x is defined`.
  TemplateValue messages = TemplateValue::Array{};
  // Tool definitions (OpenAI function schemas); null when the request has none.
  TemplateValue tools;
  // Retrieved documents for templates that take them (Granite, Command-R); null when none.
  TemplateValue documents;
  bool add_generation_prompt = true;
  // The model's special tokens; a missing one is undefined in the template.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // More template variables (e.g. {"enable_thinking", false}); they override the ones above.
  TemplateValue::Object extra;
  // The time strftime_now() formats, in UTC; unset means the system clock at render time.
  std::optional<std::chrono::system_clock::time_point> now;
};

class ChatTemplate {
 public:
  // Parses a template. Errors (kInvalidArgument): a syntax error, as
  // "chat template syntax error at <line>:<column>: <what>", or a source above the size limit.
  static Result<ChatTemplate> Parse(std::string source, const ChatTemplateLimits& limits = {});

  // The template for models that ship none: ChatML (<|im_start|>role\ncontent<|im_end|>\n ...,
  // then "<|im_start|>assistant\n" when add_generation_prompt). Content given as parts
  // contributes its text parts. Tool calls are not rendered.
  static const ChatTemplate& ChatMlFallback();

  // Renders the prompt. Errors, all kInvalidArgument with param "messages":
  //  - the template called raise_exception(msg): message is msg exactly (the template's own
  //    validation, e.g. "Conversation roles must alternate user/assistant/user/assistant/...",
  //    meant for the API client); detail "chat_template_exception";
  //  - any other failure while rendering (an undefined value used, a type error, ...):
  //    "chat template error at <line>:<column>: <what>"; detail "chat_template_error";
  //  - a limit exceeded: detail "chat_template_limit".
  Result<std::string> Render(const ChatInput& input) const;

  // The template source as given to Parse.
  const std::string& source() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace yunzhi::engine
