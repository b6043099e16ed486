// The OpenAI wire format for inference (private to the api module): request bodies of
// /v1/chat/completions, /v1/completions, /tokenize and /detokenize parsed into validated structs,
// and the response objects (chat.completion, chat.completion.chunk, text_completion, tokenize)
// written as JSON text. Pure functions: no engine state, no I/O, so the routes stay thin and every
// shape is tested on its own. Field names follow ../shared/testdata/openai/openapi.yaml.
//
// Parsing rules shared by every request:
//  - a parameter that is absent or JSON null takes its default (the spec marks them nullable);
//  - unknown top-level fields are ignored, as OpenAI-compatible servers do;
//  - errors are kInvalidArgument with `param` = the parameter's path as OpenAI writes it
//    ("messages[2].tool_calls[0].function.arguments") and OpenAI's wording ("Missing required
//    parameter: 'model'.", "Invalid type for 'temperature': expected a number, but got a string
//    instead."); `detail` (the OpenAI `code`) is one of missing_required_parameter,
//    invalid_type, invalid_value, integer_below_min_value / integer_above_max_value,
//    decimal_below_min_value / decimal_above_max_value, empty_array, array_above_max_length,
//    unsupported_value;
//  - an integer parameter also accepts a number with no fraction (3.0), as JSON does not tell
//    them apart for JavaScript clients.
// Checks that need the model (token ids against the vocabulary, prompt length against the
// context) are left to the caller: SamplingParams::Validate(n_vocab) does the former.
//
// Responses: every string is made valid UTF-8 before it is written (invalid bytes become
// U+FFFD), so the JSON is valid whatever bytes a token holds; the raw bytes of a token are in
// `bytes`. Logprobs that are -inf or below -9999 are written as -9999.0, OpenAI's value for
// "very unlikely" (JSON has no infinity).
//
// Thread safety: all functions are pure; the structs are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/sampler.h"
#include "yunzhi/engine/template_value.h"

namespace yunzhi::api {

// Largest `n` (choices per prompt): the limit in openapi.yaml. Memory is the scheduler's
// admission control's business, not a smaller cap here.
inline constexpr int32_t kMaxChoices = 128;
// Most stop sequences per request (StopConfiguration maxItems).
inline constexpr size_t kMaxStopSequences = 4;
// Largest legacy `logprobs` of /v1/completions.
inline constexpr int32_t kMaxCompletionLogprobs = 5;
// Default max_tokens of /v1/completions (the spec's default; chat has none: up to the context).
inline constexpr int32_t kDefaultCompletionMaxTokens = 16;

// ---------------------------------------------------------------------------------------------
// Requests

// Generation parameters shared by chat and legacy completions.
struct GenerationParams {
  // temperature, top_p, seed, penalties, logit_bias, logprobs/top_logprobs and the vLLM
  // extensions top_k, min_p, repetition_penalty. Ranges are checked here except logit_bias token
  // ids against the vocabulary. top_p 0 (allowed by OpenAI, rejected by the sampler) is mapped to
  // greedy decoding: temperature 0, top_p 1.
  engine::SamplingParams sampling;
  // Most tokens to generate; nullopt = until the context is full. Chat: max_completion_tokens
  // when given, else max_tokens (>= 1). Completions: max_tokens (>= 0), default 16.
  std::optional<int32_t> max_tokens;
  // Stop sequences (at most 4); empty strings are dropped (they could only stop at once).
  std::vector<std::string> stop;
  // Choices per prompt: [1, kMaxChoices].
  int32_t n = 1;
  bool stream = false;
  // stream_options.include_usage (only allowed with stream).
  bool include_usage = false;
  // vLLM extension: keep generating past end-of-sequence tokens (until max_tokens or a stop).
  bool ignore_eos = false;
  // Ollama's keep_alive: how long the model stays loaded after this request. nullopt = the
  // model's default; negative = indefinitely; 0 = unload as soon as idle.
  std::optional<int64_t> keep_alive_ms;
  // OpenAI `user` (end-user id for logs); empty when absent.
  std::string user;
};

// A function tool ({"type": "function", "function": {...}}).
struct ToolFunction {
  std::string name;         // ^[a-zA-Z0-9_-]{1,64}$
  std::string description;  // empty when absent
  // The JSON Schema of the arguments as compact JSON text; empty when absent (no arguments
  // schema: any object).
  std::string parameters_json;
  bool strict = false;
};

struct ToolChoice {
  enum class Mode { kNone, kAuto, kRequired, kFunction };
  // Default: kNone without tools, kAuto with tools (OpenAI's defaults).
  Mode mode = Mode::kNone;
  std::string function_name;  // kFunction: one of the request's tools
};

struct ResponseFormat {
  enum class Type { kText, kJsonObject, kJsonSchema };
  Type type = Type::kText;
  // kJsonSchema: json_schema.name, the schema as compact JSON text (empty when the client sent
  // none: any JSON value), json_schema.strict.
  std::string schema_name;
  std::string schema_json;
  bool strict = false;
};

struct ChatCompletionRequest {
  std::string model;
  // The conversation, ready for ChatInput::messages: an array of objects
  //   {"role", "content": string, ["name"], ["tool_calls"], ["tool_call_id"],
  //    ["reasoning_content"]}
  // with content null -> "", text parts joined with "\n" (as vLLM does for string-content
  // templates), role "developer" -> "system", tool-call arguments parsed from their JSON string
  // into a value (an object; "" -> {}), and keys the client did not send left out.
  engine::TemplateValue messages;
  std::vector<ToolFunction> tools;
  // The tools as the client sent them, for ChatInput::tools; null when there are none.
  engine::TemplateValue tools_value;
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;
  ResponseFormat response_format;
  // vLLM's chat_template_kwargs (e.g. {"enable_thinking": false}), for ChatInput::extra.
  engine::TemplateValue::Object chat_template_kwargs;
  GenerationParams params;
};

// Errors: see the file comment. Notable ones: "'messages' must contain at least one message";
// "unsupported content part type 'image_url'" (param messages[i].content[j].type); tool-call
// arguments that are not a JSON object (param messages[i].tool_calls[j].function.arguments);
// tool_choice naming a function not in tools, or "required" without tools; top_logprobs > 0
// without logprobs; stream_options without stream.
Result<ChatCompletionRequest> ParseChatCompletionRequest(const boost::json::object& body);

// One entry of a legacy prompt: text, or token ids (each >= 0).
using CompletionPrompt = std::variant<std::string, std::vector<int32_t>>;

struct CompletionRequest {
  std::string model;
  // One entry per prompt; each gets its own n choices, choice index = prompt_index * n + i
  // (OpenAI's order). "text" and ["a", "b"] give text entries, [1, 2] one token entry,
  // [[1, 2], [3]] two token entries. Never empty.
  std::vector<CompletionPrompt> prompts;
  std::optional<std::string> suffix;
  bool echo = false;
  // Legacy `logprobs` (0..5): the chosen token's logprob plus this many alternatives;
  // nullopt = none. Also reflected in params.sampling (logprobs, top_logprobs).
  std::optional<int32_t> logprobs;
  // max_tokens defaults to kDefaultCompletionMaxTokens. best_of is accepted only when absent or
  // equal to n (we do not rank candidates).
  GenerationParams params;
};

Result<CompletionRequest> ParseCompletionRequest(const boost::json::object& body);

// POST /tokenize, vLLM's two shapes: {"model", "prompt", "add_special_tokens" (default true)} or
// {"model", "messages", "add_generation_prompt" (default true), "add_special_tokens" (default
// false: the template writes them), "tools"}; both take "return_token_strs" (default false).
struct TokenizeRequest {
  std::string model;
  std::optional<std::string> prompt;  // set: the text form
  engine::TemplateValue messages;     // the chat form (as in ChatCompletionRequest); else null
  engine::TemplateValue tools_value;  // chat form only; null when none
  bool add_generation_prompt = true;
  bool add_special_tokens = true;
  bool return_token_strs = false;
};

// Errors: neither or both of prompt and messages; the messages errors of chat.
Result<TokenizeRequest> ParseTokenizeRequest(const boost::json::object& body);

// POST /detokenize: {"model", "tokens": [ids]}.
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};

Result<DetokenizeRequest> ParseDetokenizeRequest(const boost::json::object& body);

// Ollama's keep_alive: a number of seconds, or a Go duration string ("5m", "1h30m", "0.5s",
// "300ms"; a unitless number means seconds). Negative means forever (returned as -1).
// Errors: kInvalidArgument, param "keep_alive".
Result<int64_t> ParseKeepAliveMs(const boost::json::value& v);

// ---------------------------------------------------------------------------------------------
// Responses

enum class FinishReason { kStop, kLength, kToolCalls, kContentFilter };
// "stop", "length", "tool_calls", "content_filter".
std::string_view FinishReasonName(FinishReason reason);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // Prompt tokens served from the prefix cache (prompt_tokens_details.cached_tokens).
  int64_t cached_prompt_tokens = 0;
  // Completion tokens spent thinking (completion_tokens_details.reasoning_tokens).
  int64_t reasoning_tokens = 0;
};

struct TopLogprob {
  std::string token;  // the token's raw bytes
  float logprob = 0.0f;
};

// One generated (or, with echo, prompt) position.
struct TokenLogprob {
  std::string token;  // raw bytes; written as lossy UTF-8, with the exact bytes in `bytes`
  // nullopt: not available (the first prompt token when echoing); written as null.
  std::optional<float> logprob;
  std::vector<TopLogprob> top_logprobs;  // most likely first
  // Legacy completions only: where the token starts in the choice's text, in characters
  // (Unicode code points, as vLLM counts them).
  int64_t text_offset = 0;
};

// Common to every response object of one request. `id` is the caller's ("chatcmpl-..." or
// "cmpl-..."), the same in every chunk of a stream, as is `created_s` (Unix seconds).
struct ResponseMeta {
  std::string id;
  int64_t created_s = 0;
  std::string model;
  std::string system_fingerprint;  // omitted when empty
};

struct ToolCall {
  std::string id;  // "call_..."
  std::string name;
  std::string arguments;  // JSON text, as generated
};

struct ChatChoice {
  int32_t index = 0;
  // nullopt -> "content": null (a message with only tool calls).
  std::optional<std::string> content;
  // DeepSeek/vLLM extension for thinking models; omitted when nullopt.
  std::optional<std::string> reasoning_content;
  std::vector<ToolCall> tool_calls;  // "tool_calls" omitted when empty
  FinishReason finish_reason = FinishReason::kStop;
  // nullopt -> "logprobs": null; else {"content": [...], "refusal": null}.
  std::optional<std::vector<TokenLogprob>> logprobs;
};

// A chat.completion object.
std::string ChatCompletionJson(const ResponseMeta& meta, std::span<const ChatChoice> choices,
                               const Usage& usage);

// A piece of a streamed tool call: the first piece of a call carries id and name (written with
// "type": "function"), later ones only argument text.
struct ToolCallDelta {
  int32_t index = 0;  // which call of the message
  std::optional<std::string> id;
  std::optional<std::string> name;
  std::optional<std::string> arguments;
};

struct ChatDelta {
  int32_t index = 0;
  std::optional<std::string> role;  // "assistant" in a choice's first chunk
  std::optional<std::string> content;
  std::optional<std::string> reasoning_content;
  std::vector<ToolCallDelta> tool_calls;
  // Set in a choice's last chunk (often with an empty delta).
  std::optional<FinishReason> finish_reason;
  std::optional<std::vector<TokenLogprob>> logprobs;  // logprobs of this chunk's tokens
};

// A chat.completion.chunk with these choice deltas. `include_usage` (the request's
// stream_options.include_usage) adds "usage": null, as OpenAI does on every chunk but the last.
std::string ChatCompletionChunkJson(const ResponseMeta& meta, std::span<const ChatDelta> deltas,
                                    bool include_usage);
// The last chunk when include_usage is set: "choices": [] and the usage of the whole request.
// The caller then writes SseEvent("[DONE]").
std::string ChatCompletionUsageChunkJson(const ResponseMeta& meta, const Usage& usage);

struct CompletionChoice {
  int32_t index = 0;
  std::string text;
  // Always set in a response; in a stream, null until the choice's last chunk.
  std::optional<FinishReason> finish_reason;
  // nullopt -> "logprobs": null; else the legacy shape {tokens, token_logprobs, top_logprobs,
  // text_offset}.
  std::optional<std::vector<TokenLogprob>> logprobs;
};

// A text_completion object. Streams use the same shape for their chunks (TextCompletionChunkJson,
// where `include_usage` adds "usage": null) and end, when include_usage is set, with a chunk
// with "choices": [] and the usage (TextCompletionUsageChunkJson).
std::string TextCompletionJson(const ResponseMeta& meta, std::span<const CompletionChoice> choices,
                               const Usage& usage);
std::string TextCompletionChunkJson(const ResponseMeta& meta,
                                    std::span<const CompletionChoice> choices, bool include_usage);
std::string TextCompletionUsageChunkJson(const ResponseMeta& meta, const Usage& usage);

// {"count", "max_model_len", "tokens", ["token_strs"]} (vLLM's /tokenize). `token_strs`, when
// given, has one entry per token.
std::string TokenizeResponseJson(std::span<const int32_t> tokens, int64_t max_model_len,
                                 const std::vector<std::string>* token_strs = nullptr);
// {"prompt": text} (vLLM's /detokenize).
std::string DetokenizeResponseJson(std::string_view text);

// Ids in OpenAI's forms: NewResponseId("chatcmpl") -> "chatcmpl-<ULID>" (also "cmpl"; prefix
// [a-z0-9]+), NewToolCallId() -> "call_<ULID>". Unique within the process, sortable by time.
std::string NewResponseId(std::string_view prefix);
std::string NewToolCallId();

// An error as the JSON OpenAI sends in a stream that fails after it started
// ({"error": {...}}, the same object as HttpResponse::FromError's body).
std::string StreamErrorJson(const Error& error);

// `text` with every ill-formed UTF-8 sequence replaced by U+FFFD (one per maximal ill-formed
// subpart, as the Unicode standard recommends). Exposed for tests and for the routes.
std::string ToValidUtf8(std::string_view text);

}  // namespace yunzhi::api
