// Tool calls (OpenAI `tools` / `tool_choice`): the syntax a model's chat template teaches it,
// parsing generated text back into calls (batch and streaming), and a grammar constraint that
// forces a well-formed call (tool_choice "required" or a named function).
//
// Syntaxes, detected from the chat template text:
//   kHermes      <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>  (Qwen2.5, Qwen3,
//                QwQ, Hermes 3). Qwen3-Coder's XML body (<function=f><parameter=p>\nv\n
//                </parameter></function>) is parsed too: a value that parses as JSON (not a
//                string) is that value, other text a string. Forced calls use the JSON body.
//   kLlama3Json  {"name": "f", "parameters": {...}}, optionally after <|python_tag|>; the whole
//                message is the call (Llama 3.1 / 3.2 / 3.3). "arguments" is accepted too.
//   kMistral     [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]  (Mistral Nemo)
//   kMistralArgs [TOOL_CALLS]f[ARGS]{...} (optionally [CALL_ID]id before [ARGS]), repeated per
//                call (Mistral Small 3.2). The parsers of both Mistral kinds accept both forms.
// kNone = the template has no tool support; MakeToolCallConstraint then uses kHermes.
//
// The text given to the parsers must include the marker tokens: decode generated tokens WITHOUT
// skipping special tokens when tools are in play ([TOOL_CALLS] and <|python_tag|> are control
// tokens; Qwen's <tool_call> is a user-defined token and survives skip_special anyway).
//
// Text outside calls stays content, byte for byte (including whitespace between calls: the
// caller may treat whitespace-only content as none); a malformed call stays content, so no text
// is ever lost. A call's `arguments` is the compact JSON text of its arguments object.
//
// Thread safety: free functions are thread-safe; one ToolCallStreamParser per sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/json_constraint.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {

enum class ToolCallSyntax { kNone, kHermes, kLlama3Json, kMistral, kMistralArgs };

// From the chat template text (Jinja source): "[ARGS]" -> kMistralArgs, "[TOOL_CALLS]" ->
// kMistral, "<tool_call>" -> kHermes, "<|python_tag|>" or a '"parameters"' call format with
// tool_calls -> kLlama3Json; otherwise kNone.
ToolCallSyntax DetectToolCallSyntax(std::string_view chat_template);

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text of an object
  friend bool operator==(const ToolCall&, const ToolCall&) = default;
};

struct ParsedOutput {
  std::string content;
  std::vector<ToolCall> tool_calls;
};

// Splits a whole generated message into content and calls. Never fails.
ParsedOutput ParseToolCalls(ToolCallSyntax syntax, std::string_view text);

// The same, incrementally: text that might be the start of a call marker or is inside a call is
// held back. For every split of a text into pieces, the concatenation of all `content` returned
// by Push and Finish, and the list of all calls, equal ParseToolCalls of the whole text.
// kLlama3Json holds back everything from a leading '{' or <|python_tag|> to the end (the whole
// message is the call or it is not); kMistral* hold back everything after [TOOL_CALLS].
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallSyntax syntax);
  // Feeds the next piece of text; returns content safe to stream now and calls completed now.
  ParsedOutput Push(std::string_view piece);
  // End of the message: returns what was held back (a trailing unterminated call that parses is
  // a call; otherwise it is content). The parser is then reset.
  ParsedOutput Finish();

 private:
  ParsedOutput Drain(bool final);
  ToolCallSyntax syntax_;
  std::string buf_;       // text not yet released
  bool in_call_ = false;  // buf_ starts inside a call (after its marker)
  bool started_ = false;  // kLlama3Json: the first non-whitespace byte has been seen
  bool llama_call_ = false;
};

struct ToolSpec {
  std::string name;
  // JSON Schema of the arguments object; empty = any object.
  std::string parameters;
};

// A constraint under which the model writes exactly one call in `syntax` (kNone -> kHermes) to
// one of `tools` (or only `forced_name`), with arguments valid for its schema, then an end token.
// Markers that are single tokens in the vocabulary ("<tool_call>", "[TOOL_CALLS]", "[ARGS]")
// must be written as those tokens; otherwise as text. Schema rules as in json_constraint.h
// (options.schema is ignored; end_token_ids and max_whitespace_bytes apply).
// Errors: kInvalidArgument (param "tools") for no tools, an unknown forced name, a duplicate
// name, a bad parameters schema.
Result<std::unique_ptr<JsonConstraint>> MakeToolCallConstraint(
    const Tokenizer& tokenizer, ToolCallSyntax syntax, std::span<const ToolSpec> tools,
    std::optional<std::string> forced_name, const JsonConstraintOptions& options = {});

}  // namespace yunzhi::engine
