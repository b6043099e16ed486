// The OpenAI wire format: request parsing (every error path names its parameter) and response
// objects parsed back with Boost.JSON and checked against the field names of openapi.yaml.
#include "api/openai_types.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::api {
namespace {

namespace json = boost::json;
using engine::TemplateValue;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

json::object Obj(std::string_view text) { return json::parse(text).as_object(); }

// A minimal valid chat body with `extra` members merged in (they override).
json::object Chat(std::string_view extra = "{}") {
  json::object body = Obj(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  for (const auto& kv : Obj(extra)) body[kv.key()] = kv.value();
  return body;
}

json::object Completion(std::string_view extra = "{}") {
  json::object body = Obj(R"({"model":"m","prompt":"hi"})");
  for (const auto& kv : Obj(extra)) body[kv.key()] = kv.value();
  return body;
}

Error ChatError(const json::object& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_FALSE(r.has_value()) << "parsed: " << json::serialize(body);
  return r ? Error() : r.error();
}

Error CompletionError(const json::object& body) {
  auto r = ParseCompletionRequest(body);
  EXPECT_FALSE(r.has_value()) << "parsed: " << json::serialize(body);
  return r ? Error() : r.error();
}

ChatCompletionRequest ChatOk(const json::object& body) {
  auto r = ParseChatCompletionRequest(body);
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  return r ? std::move(*r) : ChatCompletionRequest{};
}

CompletionRequest CompletionOk(const json::object& body) {
  auto r = ParseCompletionRequest(body);
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  return r ? std::move(*r) : CompletionRequest{};
}

// Each case: a chat body fragment merged into a valid request, the expected param, and a piece
// of the expected message.
struct ErrorCase {
  const char* extra;
  const char* param;
  const char* message;
};

class ChatErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ChatErrors, NameTheParameter) {
  const ErrorCase& c = GetParam();
  Error e = ChatError(Chat(c.extra));
  EXPECT_EQ(e.code, Code::kInvalidArgument);
  EXPECT_EQ(e.param, c.param) << e.message;
  EXPECT_THAT(e.message, HasSubstr(c.message));
}

INSTANTIATE_TEST_SUITE_P(
    OpenAiTypes, ChatErrors,
    ::testing::Values(
        ErrorCase{R"({"model":null})", "model", "Missing required parameter: 'model'."},
        ErrorCase{R"({"model":7})", "model",
                  "Invalid type for 'model': expected a string, but got an integer instead."},
        ErrorCase{R"({"model":""})", "model", "must not be empty"},
        ErrorCase{R"({"messages":null})", "messages", "Missing required parameter: 'messages'."},
        ErrorCase{R"({"messages":{}})", "messages", "expected an array, but got an object"},
        ErrorCase{R"({"messages":[]})", "messages", "'messages' must contain at least one message"},
        ErrorCase{R"({"messages":["hi"]})", "messages[0]", "expected an object, but got a string"},
        ErrorCase{R"({"messages":[{"content":"x"}]})", "messages[0].role",
                  "Missing required parameter: 'messages[0].role'."},
        ErrorCase{R"({"messages":[{"role":"bot","content":"x"}]})", "messages[0].role",
                  "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', "
                  "'function', 'tool', and 'developer'."},
        ErrorCase{R"({"messages":[{"role":"user"}]})", "messages[0].content",
                  "Missing required parameter: 'messages[0].content'."},
        ErrorCase{R"({"messages":[{"role":"user","content":null}]})", "messages[0].content",
                  "expected one of a string or array of objects, but got null instead."},
        ErrorCase{R"({"messages":[{"role":"user","content":5}]})", "messages[0].content",
                  "but got an integer instead"},
        ErrorCase{R"({"messages":[{"role":"user","content":[]}]})", "messages[0].content",
                  "empty array"},
        ErrorCase{R"({"messages":[{"role":"user","content":["x"]}]})", "messages[0].content[0]",
                  "expected an object"},
        ErrorCase{R"({"messages":[{"role":"user","content":[{"text":"x"}]}]})",
                  "messages[0].content[0].type", "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})",
                  "messages[0].content[0].text", "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},
                    {"type":"image_url","image_url":{"url":"http://x"}}]}]})",
                  "messages[0].content[1].type", "unsupported content part type 'image_url'"},
        ErrorCase{R"({"messages":[{"role":"user","content":[{"type":"input_audio"}]}]})",
                  "messages[0].content[0].type", "unsupported content part type 'input_audio'"},
        ErrorCase{R"({"messages":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}]})",
                  "messages[0].content[0].type", "unsupported content part type 'refusal'"},
        ErrorCase{R"({"messages":[{"role":"user","content":"x","name":3}]})", "messages[0].name",
                  "expected a string"},
        ErrorCase{R"({"messages":[{"role":"function","content":"x"}]})", "messages[0].name",
                  "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"tool","content":"x","tool_call_id":1}]})",
                  "messages[0].tool_call_id", "expected a string"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":{}}]})",
                  "messages[0].tool_calls", "expected an array"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[
                    {"type":"function","function":{"name":"f","arguments":"{}"}}]}]})",
                  "messages[0].tool_calls[0].id", "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[
                    {"id":"c","type":"custom","function":{"name":"f","arguments":"{}"}}]}]})",
                  "messages[0].tool_calls[0].type", "unsupported tool call type 'custom'"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c"}]}]})",
                  "messages[0].tool_calls[0].function", "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[
                    {"id":"c","function":{"arguments":"{}"}}]}]})",
                  "messages[0].tool_calls[0].function.name", "Missing required parameter"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[
                    {"id":"c","function":{"name":"f","arguments":{"a":1}}}]}]})",
                  "messages[0].tool_calls[0].function.arguments",
                  "expected a string, but got an object"},
        ErrorCase{R"({"messages":[{"role":"user","content":"q"},{"role":"assistant",
                    "tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},
                    {"id":"b","function":{"name":"g","arguments":"{\"x\":"}}]}]})",
                  "messages[1].tool_calls[1].function.arguments", "not valid JSON"},
        ErrorCase{R"({"messages":[{"role":"assistant","tool_calls":[
                    {"id":"c","function":{"name":"f","arguments":"[1,2]"}}]}]})",
                  "messages[0].tool_calls[0].function.arguments", "expected a JSON object"},
        ErrorCase{R"({"messages":[{"role":"assistant","content":"x","reasoning_content":1}]})",
                  "messages[0].reasoning_content", "expected a string"},
        // tools, tool_choice
        ErrorCase{R"({"tools":{}})", "tools", "expected an array"},
        ErrorCase{R"({"tools":[1]})", "tools[0]", "expected an object"},
        ErrorCase{R"({"tools":[{"function":{"name":"f"}}]})", "tools[0].type",
                  "Missing required parameter"},
        ErrorCase{R"({"tools":[{"type":"retrieval"}]})", "tools[0].type",
                  "Invalid value: 'retrieval'. Supported values are: 'function' and 'custom'."},
        ErrorCase{R"({"tools":[{"type":"custom","custom":{"name":"x"}}]})", "tools[0].type",
                  "custom tools are not supported"},
        ErrorCase{R"({"tools":[{"type":"function"}]})", "tools[0].function",
                  "Missing required parameter"},
        ErrorCase{R"({"tools":[{"type":"function","function":{}}]})", "tools[0].function.name",
                  "Missing required parameter"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"get weather"}}]})",
                  "tools[0].function.name", "does not match pattern"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f"}},
                    {"type":"function","function":{"name":"f"}}]})",
                  "tools[1].function.name", "duplicate function name 'f'"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f","description":1}}]})",
                  "tools[0].function.description", "expected a string"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}]})",
                  "tools[0].function.parameters", "expected an object, but got a string"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f","strict":"yes"}}]})",
                  "tools[0].function.strict", "expected a boolean"},
        ErrorCase{R"({"tool_choice":"required"})", "tool_choice",
                  "'tool_choice' is only allowed when 'tools' are specified."},
        ErrorCase{R"({"tool_choice":"always"})", "tool_choice",
                  "Invalid value: 'always'. Supported values are: 'none', 'auto', and "
                  "'required'."},
        ErrorCase{R"({"tool_choice":1})", "tool_choice", "expected a string or an object"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                    "tool_choice":{"type":"allowed_tools"}})",
                  "tool_choice.type", "unsupported tool_choice type 'allowed_tools'"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                    "tool_choice":{"type":"function"}})",
                  "tool_choice.function", "Missing required parameter"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                    "tool_choice":{"type":"function","function":{}}})",
                  "tool_choice.function.name", "Missing required parameter"},
        ErrorCase{R"({"tools":[{"type":"function","function":{"name":"f"}}],
                    "tool_choice":{"type":"function","function":{"name":"g"}}})",
                  "tool_choice.function.name", "no function named 'g'"},
        ErrorCase{R"({"tool_choice":{"type":"function","function":{"name":"g"}}})", "tool_choice",
                  "only allowed when 'tools' are specified"},
        ErrorCase{R"({"parallel_tool_calls":"no"})", "parallel_tool_calls", "expected a boolean"},
        // response_format
        ErrorCase{R"({"response_format":"json"})", "response_format", "expected an object"},
        ErrorCase{R"({"response_format":{}})", "response_format.type",
                  "Missing required parameter"},
        ErrorCase{R"({"response_format":{"type":"xml"}})", "response_format.type",
                  "Supported values are: 'text', 'json_object', and 'json_schema'."},
        ErrorCase{R"({"response_format":{"type":"json_schema"}})", "response_format.json_schema",
                  "Missing required parameter"},
        ErrorCase{R"({"response_format":{"type":"json_schema","json_schema":{"schema":{}}}})",
                  "response_format.json_schema.name", "Missing required parameter"},
        ErrorCase{R"({"response_format":{"type":"json_schema","json_schema":{"name":"a b"}}})",
                  "response_format.json_schema.name", "does not match pattern"},
        ErrorCase{R"({"response_format":{"type":"json_schema",
                    "json_schema":{"name":"x","schema":"{}"}}})",
                  "response_format.json_schema.schema", "expected an object"},
        ErrorCase{R"({"response_format":{"type":"json_schema",
                    "json_schema":{"name":"x","strict":1}}})",
                  "response_format.json_schema.strict", "expected a boolean"},
        ErrorCase{R"({"chat_template_kwargs":[]})", "chat_template_kwargs", "expected an object"},
        // sampling and limits
        ErrorCase{R"({"temperature":"0.5"})", "temperature",
                  "Invalid type for 'temperature': expected a number, but got a string instead."},
        ErrorCase{R"({"temperature":2.5})", "temperature",
                  "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                  "but got 2.5 instead."},
        ErrorCase{R"({"temperature":-1})", "temperature", "decimal below minimum value"},
        ErrorCase{R"({"top_p":1.5})", "top_p", "Expected a value <= 1"},
        ErrorCase{R"({"top_p":true})", "top_p", "expected a number, but got a boolean"},
        ErrorCase{R"({"seed":"1"})", "seed", "expected an integer, but got a string"},
        ErrorCase{R"({"seed":1.5})", "seed", "expected an integer, but got a decimal"},
        ErrorCase{R"({"presence_penalty":3})", "presence_penalty", "Expected a value <= 2"},
        ErrorCase{R"({"frequency_penalty":-2.5})", "frequency_penalty", "Expected a value >= -2"},
        ErrorCase{R"({"top_k":-2})", "top_k", "integer below minimum value"},
        ErrorCase{R"({"top_k":1.5})", "top_k", "expected an integer"},
        ErrorCase{R"({"min_p":2})", "min_p", "Expected a value <= 1"},
        ErrorCase{R"({"repetition_penalty":0})", "repetition_penalty", "expected a value > 0"},
        ErrorCase{R"({"repetition_penalty":-1})", "repetition_penalty", "below minimum"},
        ErrorCase{R"({"ignore_eos":1})", "ignore_eos", "expected a boolean"},
        ErrorCase{R"({"keep_alive":"soon"})", "keep_alive", "invalid keep_alive 'soon'"},
        ErrorCase{R"({"keep_alive":true})", "keep_alive", "expected a string or a number"},
        ErrorCase{R"({"user":1})", "user", "expected a string"},
        ErrorCase{R"({"n":0})", "n",
                  "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 "
                  "instead."},
        ErrorCase{R"({"n":129})", "n",
                  "Invalid 'n': integer above maximum value. Expected a value <= 128, but got "
                  "129 instead."},
        ErrorCase{R"({"n":"2"})", "n", "expected an integer"},
        ErrorCase{R"({"max_tokens":0})", "max_tokens", "Expected a value >= 1"},
        ErrorCase{R"({"max_tokens":2147483648})", "max_tokens", "integer above maximum value"},
        ErrorCase{R"({"max_completion_tokens":-5})", "max_completion_tokens",
                  "Expected a value >= 1"},
        ErrorCase{R"({"stop":5})", "stop", "expected one of a string or array of strings"},
        ErrorCase{R"({"stop":["a","b","c","d","e"]})", "stop",
                  "Invalid 'stop': array too long. Expected an array with maximum length 4, but "
                  "got an array with length 5 instead."},
        ErrorCase{R"({"stop":["a",1]})", "stop[1]", "expected a string, but got an integer"},
        ErrorCase{R"({"logit_bias":[]})", "logit_bias", "expected an object"},
        ErrorCase{R"({"logit_bias":{"abc":1}})", "logit_bias",
                  "Invalid key in 'logit_bias': 'abc'"},
        ErrorCase{R"({"logit_bias":{"-1":1}})", "logit_bias", "Invalid key in 'logit_bias': '-1'"},
        ErrorCase{R"({"logit_bias":{"2147483648":1}})", "logit_bias", "Invalid key"},
        ErrorCase{R"({"logit_bias":{"":1}})", "logit_bias", "Invalid key"},
        ErrorCase{R"({"logit_bias":{"5":"1"}})", "logit_bias.5", "expected a number"},
        ErrorCase{R"({"logit_bias":{"5":101}})", "logit_bias",
                  "the bias 101 for token 5 is outside [-100, 100]"},
        ErrorCase{R"({"logit_bias":{"5":-100.5}})", "logit_bias", "outside [-100, 100]"},
        ErrorCase{R"({"logprobs":1})", "logprobs", "expected a boolean"},
        ErrorCase{R"({"top_logprobs":3})", "top_logprobs", "'logprobs' must be set to true"},
        ErrorCase{R"({"logprobs":false,"top_logprobs":3})", "top_logprobs",
                  "'logprobs' must be set to true"},
        ErrorCase{R"({"logprobs":true,"top_logprobs":21})", "top_logprobs",
                  "Expected a value <= 20"},
        ErrorCase{R"({"stream":"yes"})", "stream", "expected a boolean"},
        ErrorCase{R"({"stream_options":{"include_usage":true}})", "stream_options",
                  "only allowed when 'stream' is enabled"},
        ErrorCase{R"({"stream":true,"stream_options":true})", "stream_options",
                  "expected an object"},
        ErrorCase{R"({"stream":true,"stream_options":{"include_usage":"yes"}})",
                  "stream_options.include_usage", "expected a boolean"}));

TEST(OpenAiTypes, ErrorDetailCodesFollowOpenAi) {
  EXPECT_EQ(ChatError(Chat(R"({"model":null})")).detail, "missing_required_parameter");
  EXPECT_EQ(ChatError(Chat(R"({"temperature":"x"})")).detail, "invalid_type");
  EXPECT_EQ(ChatError(Chat(R"({"n":0})")).detail, "integer_below_min_value");
  EXPECT_EQ(ChatError(Chat(R"({"n":200})")).detail, "integer_above_max_value");
  EXPECT_EQ(ChatError(Chat(R"({"temperature":3})")).detail, "decimal_above_max_value");
  EXPECT_EQ(ChatError(Chat(R"({"messages":[]})")).detail, "empty_array");
  EXPECT_EQ(ChatError(Chat(R"({"stop":["a","b","c","d","e"]})")).detail, "array_above_max_length");
  EXPECT_EQ(
      ChatError(Chat(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})")).detail,
      "unsupported_value");
  EXPECT_EQ(ChatError(Chat(R"({"tool_choice":"x"})")).detail, "invalid_value");
}

TEST(OpenAiTypes, ChatMessagesBecomeTemplateValues) {
  ChatCompletionRequest r = ChatOk(Chat(R"({"messages":[
      {"role":"developer","content":"be brief"},
      {"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"user","content":"what is 2+2?","name":"ann","unknown_key":1},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"add","arguments":"{\"b\": 2, \"a\": 2.0, \"n\": [1]}"}}]},
      {"role":"tool","content":"4","tool_call_id":"call_1"},
      {"role":"assistant","content":[{"type":"text","text":"It is"},
        {"type":"refusal","refusal":"4"}],"reasoning_content":"think"},
      {"role":"function","name":"f","content":null},
      {"role":"assistant","tool_calls":[{"id":"c2","function":{"name":"noargs","arguments":""}}]},
      {"role":"assistant","content":"done","tool_calls":[]}]})"));
  const TemplateValue& m = r.messages;
  ASSERT_TRUE(m.is_array());
  ASSERT_EQ(m.as_array().size(), 9u);
  EXPECT_EQ(m.as_array()[0].ToJson(), R"({"role": "system", "content": "be brief"})");
  EXPECT_EQ(m.as_array()[1].ToJson(), R"({"role": "system", "content": "a\nb"})");
  EXPECT_EQ(m.as_array()[2].ToJson(),
            R"({"role": "user", "content": "what is 2+2?", "name": "ann"})");
  // Arguments become an object with the client's key order and number kinds.
  EXPECT_EQ(m.as_array()[3].ToJson(),
            R"({"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", )"
            R"("type": "function", "function": {"name": "add", "arguments": )"
            R"({"b": 2, "a": 2.0, "n": [1]}}}]})");
  EXPECT_EQ(m.as_array()[4].ToJson(),
            R"({"role": "tool", "content": "4", "tool_call_id": "call_1"})");
  EXPECT_EQ(m.as_array()[5].ToJson(),
            R"({"role": "assistant", "content": "It is\n4", "reasoning_content": "think"})");
  EXPECT_EQ(m.as_array()[6].ToJson(), R"({"role": "function", "content": "", "name": "f"})");
  EXPECT_EQ(m.as_array()[7].ToJson(),
            R"({"role": "assistant", "content": "", "tool_calls": [{"id": "c2", )"
            R"("type": "function", "function": {"name": "noargs", "arguments": {}}}]})");
  // An empty tool_calls list is left out: templates test whether the key is defined.
  EXPECT_EQ(m.as_array()[8].Find("tool_calls"), nullptr);
}

TEST(OpenAiTypes, ChatDefaults) {
  ChatCompletionRequest r = ChatOk(Chat());
  EXPECT_EQ(r.model, "m");
  EXPECT_THAT(r.tools, IsEmpty());
  EXPECT_TRUE(r.tools_value.is_null());
  EXPECT_EQ(r.tool_choice.mode, ToolChoice::Mode::kNone);
  EXPECT_TRUE(r.parallel_tool_calls);
  EXPECT_EQ(r.response_format.type, ResponseFormat::Type::kText);
  EXPECT_FALSE(r.params.max_tokens.has_value());
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.params.stream);
  EXPECT_FALSE(r.params.include_usage);
  EXPECT_FALSE(r.params.keep_alive_ms.has_value());
  EXPECT_THAT(r.params.stop, IsEmpty());
  const engine::SamplingParams& s = r.params.sampling;
  EXPECT_EQ(s.temperature, 1.0f);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_FALSE(s.seed.has_value());
  EXPECT_FALSE(s.logprobs);
  EXPECT_EQ(s.top_logprobs, 0);
  EXPECT_TRUE(s.Validate(100).has_value());
}

TEST(OpenAiTypes, NullMeansNotGivenAndUnknownFieldsAreIgnored) {
  ChatCompletionRequest r = ChatOk(Chat(R"({"temperature":null,"n":null,"stop":null,
      "tools":null,"tool_choice":null,"stream_options":null,"logit_bias":null,"seed":null,
      "service_tier":"auto","store":false,"metadata":{"a":"b"},"modalities":["text"]})"));
  EXPECT_EQ(r.params.sampling.temperature, 1.0f);
  EXPECT_EQ(r.params.n, 1);
}

TEST(OpenAiTypes, ChatSamplingFieldsMapToSamplingParams) {
  ChatCompletionRequest r = ChatOk(Chat(R"({"temperature":0.5,"top_p":0.9,"seed":-1,
      "presence_penalty":0.5,"frequency_penalty":-0.25,"logit_bias":{"7":-100,"11":2.5},
      "logprobs":true,"top_logprobs":5,"top_k":40,"min_p":0.05,"repetition_penalty":1.1,
      "ignore_eos":true,"user":"u-1","keep_alive":"5m","n":3,"max_tokens":9,
      "stream":true,"stream_options":{"include_usage":true}})"));
  const engine::SamplingParams& s = r.params.sampling;
  EXPECT_FLOAT_EQ(s.temperature, 0.5f);
  EXPECT_FLOAT_EQ(s.top_p, 0.9f);
  EXPECT_EQ(s.seed, std::numeric_limits<uint64_t>::max());  // -1 as 64 bits
  EXPECT_FLOAT_EQ(s.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, -0.25f);
  EXPECT_EQ(s.logit_bias.size(), 2u);
  EXPECT_FLOAT_EQ(s.logit_bias.at(7), -100.0f);
  EXPECT_FLOAT_EQ(s.logit_bias.at(11), 2.5f);
  EXPECT_TRUE(s.logprobs);
  EXPECT_EQ(s.top_logprobs, 5);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_FLOAT_EQ(s.min_p, 0.05f);
  EXPECT_FLOAT_EQ(s.repetition_penalty, 1.1f);
  EXPECT_TRUE(s.Validate(100).has_value());
  EXPECT_TRUE(r.params.ignore_eos);
  EXPECT_EQ(r.params.user, "u-1");
  EXPECT_EQ(r.params.keep_alive_ms, 300000);
  EXPECT_EQ(r.params.n, 3);
  EXPECT_EQ(r.params.max_tokens, 9);
  EXPECT_TRUE(r.params.stream);
  EXPECT_TRUE(r.params.include_usage);
}

TEST(OpenAiTypes, TopPZeroMeansGreedy) {
  ChatCompletionRequest r = ChatOk(Chat(R"({"temperature":0.8,"top_p":0})"));
  EXPECT_EQ(r.params.sampling.temperature, 0.0f);
  EXPECT_EQ(r.params.sampling.top_p, 1.0f);
  EXPECT_TRUE(r.params.sampling.Validate(10).has_value());
}

TEST(OpenAiTypes, SeedTakesTheWholeSixtyFourBits) {
  EXPECT_EQ(ChatOk(Chat(R"({"seed":18446744073709551615})")).params.sampling.seed,
            std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(ChatOk(Chat(R"({"seed":-9223372036854775808})")).params.sampling.seed,
            uint64_t{1} << 63);
  EXPECT_EQ(ChatOk(Chat(R"({"seed":42.0})")).params.sampling.seed, 42u);
}

TEST(OpenAiTypes, MaxCompletionTokensWinsOverMaxTokens) {
  EXPECT_EQ(ChatOk(Chat(R"({"max_tokens":5,"max_completion_tokens":7})")).params.max_tokens, 7);
  EXPECT_EQ(ChatOk(Chat(R"({"max_completion_tokens":7})")).params.max_tokens, 7);
  EXPECT_EQ(ChatOk(Chat(R"({"max_tokens":5})")).params.max_tokens, 5);
  EXPECT_EQ(ChatOk(Chat(R"({"max_tokens":5.0})")).params.max_tokens, 5);
}

TEST(OpenAiTypes, NLimits) {
  EXPECT_EQ(ChatOk(Chat(R"({"n":1})")).params.n, 1);
  EXPECT_EQ(ChatOk(Chat(R"({"n":128})")).params.n, kMaxChoices);
  EXPECT_EQ(ChatError(Chat(R"({"n":-1})")).param, "n");
  EXPECT_EQ(ChatError(Chat(R"({"n":1.5})")).param, "n");
  EXPECT_EQ(ChatError(Chat(R"({"n":true})")).param, "n");
}

TEST(OpenAiTypes, StopForms) {
  EXPECT_THAT(ChatOk(Chat(R"({"stop":"\n\n"})")).params.stop, ElementsAre("\n\n"));
  EXPECT_THAT(ChatOk(Chat(R"({"stop":["a","b","c","d"]})")).params.stop,
              ElementsAre("a", "b", "c", "d"));
  // Empty strings can only stop at once: dropped, as is an empty list.
  EXPECT_THAT(ChatOk(Chat(R"({"stop":""})")).params.stop, IsEmpty());
  EXPECT_THAT(ChatOk(Chat(R"({"stop":["","x"]})")).params.stop, ElementsAre("x"));
  EXPECT_THAT(ChatOk(Chat(R"({"stop":[]})")).params.stop, IsEmpty());
  EXPECT_THAT(ChatOk(Chat(R"({"stop":["é","<|im_end|>"]})")).params.stop,
              ElementsAre("é", "<|im_end|>"));
}

TEST(OpenAiTypes, LogitBiasEdges) {
  auto bias = ChatOk(Chat(R"({"logit_bias":{"0":100,"2147483647":-100,"3":0}})"))
                  .params.sampling.logit_bias;
  EXPECT_EQ(bias.size(), 3u);
  EXPECT_FLOAT_EQ(bias.at(0), 100.0f);
  EXPECT_FLOAT_EQ(bias.at(2147483647), -100.0f);
  EXPECT_TRUE(ChatOk(Chat(R"({"logit_bias":{}})")).params.sampling.logit_bias.empty());
  // Keys are checked against the vocabulary later, by SamplingParams::Validate.
  auto big = ChatOk(Chat(R"({"logit_bias":{"500":1}})")).params.sampling;
  EXPECT_FALSE(big.Validate(100).has_value());
  EXPECT_EQ(ChatError(Chat(R"({"logit_bias":{" 5":1}})")).param, "logit_bias");
  EXPECT_EQ(ChatError(Chat(R"({"logit_bias":{"+5":1}})")).param, "logit_bias");
  EXPECT_EQ(ChatError(Chat(R"({"logit_bias":{"5.0":1}})")).param, "logit_bias");
}

TEST(OpenAiTypes, ToolsAndToolChoice) {
  ChatCompletionRequest r = ChatOk(Chat(R"({"tools":[
      {"type":"function","function":{"name":"get_weather","description":"Weather now",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},
        "required":["city"]},"strict":true}},
      {"type":"function","function":{"name":"no-params"}}]})"));
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "Weather now");
  EXPECT_EQ(r.tools[0].parameters_json,
            R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  EXPECT_TRUE(r.tools[0].strict);
  EXPECT_EQ(r.tools[1].name, "no-params");
  EXPECT_EQ(r.tools[1].parameters_json, "");
  EXPECT_FALSE(r.tools[1].strict);
  EXPECT_EQ(r.tool_choice.mode, ToolChoice::Mode::kAuto);  // the default with tools
  ASSERT_TRUE(r.tools_value.is_array());
  EXPECT_EQ(r.tools_value.as_array()[1].ToJson(),
            R"({"type": "function", "function": {"name": "no-params"}})");
  EXPECT_EQ(r.tools_value.as_array()[0].Find("function")->Find("parameters")->ToJson(),
            R"({"type": "object", "properties": {"city": {"type": "string"}}, )"
            R"("required": ["city"]})");

  const std::string tools = R"("tools":[{"type":"function","function":{"name":"f"}}])";
  auto choice = [&](std::string_view tc) {
    return ChatOk(Chat(fmt::format(R"({{{},"tool_choice":{}}})", tools, tc))).tool_choice;
  };
  EXPECT_EQ(choice(R"("none")").mode, ToolChoice::Mode::kNone);
  EXPECT_EQ(choice(R"("auto")").mode, ToolChoice::Mode::kAuto);
  EXPECT_EQ(choice(R"("required")").mode, ToolChoice::Mode::kRequired);
  ToolChoice named = choice(R"({"type":"function","function":{"name":"f"}})");
  EXPECT_EQ(named.mode, ToolChoice::Mode::kFunction);
  EXPECT_EQ(named.function_name, "f");
  EXPECT_FALSE(ChatOk(Chat(R"({"parallel_tool_calls":false})")).parallel_tool_calls);
  // Without tools, "auto" and "none" both mean plain text; an empty list is no tools.
  EXPECT_EQ(ChatOk(Chat(R"({"tool_choice":"auto"})")).tool_choice.mode, ToolChoice::Mode::kNone);
  EXPECT_TRUE(ChatOk(Chat(R"({"tools":[]})")).tools_value.is_null());
}

TEST(OpenAiTypes, ResponseFormats) {
  EXPECT_EQ(ChatOk(Chat(R"({"response_format":{"type":"text"}})")).response_format.type,
            ResponseFormat::Type::kText);
  EXPECT_EQ(ChatOk(Chat(R"({"response_format":{"type":"json_object"}})")).response_format.type,
            ResponseFormat::Type::kJsonObject);
  ResponseFormat rf = ChatOk(Chat(R"({"response_format":{"type":"json_schema","json_schema":
      {"name":"person","schema":{"type":"object","properties":{"age":{"type":"integer"}}},
      "strict":true}}})"))
                          .response_format;
  EXPECT_EQ(rf.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(rf.schema_name, "person");
  EXPECT_EQ(rf.schema_json, R"({"type":"object","properties":{"age":{"type":"integer"}}})");
  EXPECT_TRUE(rf.strict);
  rf = ChatOk(Chat(R"({"response_format":{"type":"json_schema","json_schema":{"name":"x"}}})"))
           .response_format;
  EXPECT_EQ(rf.schema_json, "");
  EXPECT_FALSE(rf.strict);
}

TEST(OpenAiTypes, ChatTemplateKwargsKeepTheirOrder) {
  auto r = ChatOk(Chat(R"({"chat_template_kwargs":{"enable_thinking":false,"x":1}})"));
  ASSERT_EQ(r.chat_template_kwargs.size(), 2u);
  EXPECT_EQ(r.chat_template_kwargs[0].first, "enable_thinking");
  EXPECT_EQ(r.chat_template_kwargs[0].second, TemplateValue(false));
  EXPECT_EQ(r.chat_template_kwargs[1].second, TemplateValue(1));
}

TEST(OpenAiTypes, KeepAliveForms) {
  auto ms = [](std::string_view text) { return ParseKeepAliveMs(json::parse(text)); };
  EXPECT_EQ(ms(R"("5m")").value(), 300000);
  EXPECT_EQ(ms(R"("1h30m")").value(), 5400000);
  EXPECT_EQ(ms(R"("1.5s")").value(), 1500);
  EXPECT_EQ(ms(R"("300ms")").value(), 300);
  EXPECT_EQ(ms(R"("2000us")").value(), 2);
  EXPECT_EQ(ms(R"("2000µs")").value(), 2);
  EXPECT_EQ(ms(R"("0")").value(), 0);
  EXPECT_EQ(ms(R"("30")").value(), 30000);
  EXPECT_EQ(ms(R"("-1")").value(), -1);
  EXPECT_EQ(ms(R"("-1m")").value(), -1);
  EXPECT_EQ(ms("600").value(), 600000);
  EXPECT_EQ(ms("0.25").value(), 250);
  EXPECT_EQ(ms("-1").value(), -1);
  EXPECT_EQ(ms("1e300").value(), -1);  // too long to count: forever
  for (const char* bad : {R"("")", R"("5x")", R"("m")", R"("5 m")", R"("inf")", R"("nan")",
                          R"("0x10")", R"("5d")", R"("1.2.3s")", "null", "[]"}) {
    auto r = ms(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().param, "keep_alive") << bad;
  }
}

// ---- /v1/completions

TEST(OpenAiTypes, CompletionPromptForms) {
  auto r = CompletionOk(Completion());
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r.prompts[0]), "hi");
  EXPECT_EQ(r.params.max_tokens, kDefaultCompletionMaxTokens);

  r = CompletionOk(Completion(R"({"prompt":["a","b"]})"));
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(std::get<std::string>(r.prompts[1]), "b");

  r = CompletionOk(Completion(R"({"prompt":[1,2,3]})"));
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_THAT(std::get<std::vector<int32_t>>(r.prompts[0]), ElementsAre(1, 2, 3));

  r = CompletionOk(Completion(R"({"prompt":[[1,2],[0]]})"));
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_THAT(std::get<std::vector<int32_t>>(r.prompts[0]), ElementsAre(1, 2));
  EXPECT_THAT(std::get<std::vector<int32_t>>(r.prompts[1]), ElementsAre(0));

  r = CompletionOk(Completion(R"({"prompt":""})"));
  EXPECT_EQ(std::get<std::string>(r.prompts[0]), "");
}

TEST(OpenAiTypes, CompletionFields) {
  auto r = CompletionOk(Completion(R"({"suffix":"end","echo":true,"logprobs":3,"max_tokens":0,
      "n":2,"best_of":2,"temperature":0,"stop":["x"],"stream":true,
      "stream_options":{"include_usage":true}})"));
  EXPECT_EQ(r.suffix, "end");
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_TRUE(r.params.sampling.logprobs);
  EXPECT_EQ(r.params.sampling.top_logprobs, 3);
  EXPECT_EQ(r.params.max_tokens, 0);  // legal here: echo with logprobs scores a prompt
  EXPECT_EQ(r.params.n, 2);
  EXPECT_EQ(r.params.sampling.temperature, 0.0f);
  EXPECT_THAT(r.params.stop, ElementsAre("x"));
  EXPECT_TRUE(r.params.include_usage);

  r = CompletionOk(Completion(R"({"logprobs":0})"));
  EXPECT_EQ(r.logprobs, 0);
  EXPECT_TRUE(r.params.sampling.logprobs);
  EXPECT_EQ(r.params.sampling.top_logprobs, 0);
  r = CompletionOk(Completion(R"({"best_of":1})"));
  EXPECT_FALSE(r.logprobs.has_value());
  EXPECT_FALSE(r.params.sampling.logprobs);
  EXPECT_FALSE(r.suffix.has_value());
}

class CompletionErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CompletionErrors, NameTheParameter) {
  const ErrorCase& c = GetParam();
  Error e = CompletionError(Completion(c.extra));
  EXPECT_EQ(e.code, Code::kInvalidArgument);
  EXPECT_EQ(e.param, c.param) << e.message;
  EXPECT_THAT(e.message, HasSubstr(c.message));
}

INSTANTIATE_TEST_SUITE_P(
    OpenAiTypes, CompletionErrors,
    ::testing::Values(
        ErrorCase{R"({"model":null})", "model", "Missing required parameter: 'model'."},
        ErrorCase{R"({"prompt":null})", "prompt", "Missing required parameter: 'prompt'."},
        ErrorCase{R"({"prompt":5})", "prompt",
                  "expected one of a string, array of strings, array of integers, or array of "
                  "arrays of integers, but got an integer instead."},
        ErrorCase{R"({"prompt":[]})", "prompt", "empty array"},
        ErrorCase{R"({"prompt":["a",1]})", "prompt[1]", "expected a string"},
        ErrorCase{R"({"prompt":[1,"a"]})", "prompt[1]", "expected an integer"},
        ErrorCase{R"({"prompt":[1,-2]})", "prompt[1]", "integer below minimum value"},
        ErrorCase{R"({"prompt":[1,2.5]})", "prompt[1]", "expected an integer, but got a decimal"},
        ErrorCase{R"({"prompt":[1,4294967296]})", "prompt[1]", "integer above maximum value"},
        ErrorCase{R"({"prompt":[[1],[]]})", "prompt[1]", "empty array"},
        ErrorCase{R"({"prompt":[[1],2]})", "prompt[1]", "expected an array of integers"},
        ErrorCase{R"({"prompt":[[1,"a"]]})", "prompt[0][1]", "expected an integer"},
        ErrorCase{R"({"prompt":[{"text":"a"}]})", "prompt[0]", "but got an object instead"},
        ErrorCase{R"({"suffix":1})", "suffix", "expected a string"},
        ErrorCase{R"({"echo":"yes"})", "echo", "expected a boolean"},
        ErrorCase{R"({"logprobs":true})", "logprobs", "expected an integer, but got a boolean"},
        ErrorCase{R"({"logprobs":6})", "logprobs", "Expected a value <= 5"},
        ErrorCase{R"({"logprobs":-1})", "logprobs", "Expected a value >= 0"},
        ErrorCase{R"({"max_tokens":-1})", "max_tokens", "Expected a value >= 0"},
        ErrorCase{R"({"best_of":3})", "best_of",
                  "only best_of equal to n is supported (got best_of=3, n=1)"},
        ErrorCase{R"({"best_of":1,"n":2})", "best_of", "got best_of=1, n=2"},
        ErrorCase{R"({"best_of":21})", "best_of", "Expected a value <= 20"},
        ErrorCase{R"({"temperature":"hot"})", "temperature", "expected a number"},
        ErrorCase{R"({"n":0})", "n", "Expected a value >= 1"},
        ErrorCase{R"({"stop":["a","b","c","d","e"]})", "stop", "array too long"},
        ErrorCase{R"({"stream_options":{"include_usage":true}})", "stream_options",
                  "only allowed when 'stream' is enabled"}));

// ---- /tokenize, /detokenize

TEST(OpenAiTypes, TokenizeShapes) {
  auto r = ParseTokenizeRequest(Obj(R"({"model":"m","prompt":"Hello"})"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->prompt, "Hello");
  EXPECT_TRUE(r->add_special_tokens);
  EXPECT_FALSE(r->return_token_strs);

  r = ParseTokenizeRequest(Obj(R"({"model":"m","messages":[{"role":"user","content":"x"}],
      "add_generation_prompt":false,"return_token_strs":true,
      "tools":[{"type":"function","function":{"name":"f"}}]})"));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_FALSE(r->prompt.has_value());
  EXPECT_EQ(r->messages.ToJson(), R"([{"role": "user", "content": "x"}])");
  EXPECT_TRUE(r->tools_value.is_array());
  EXPECT_FALSE(r->add_generation_prompt);
  EXPECT_FALSE(r->add_special_tokens);  // the template writes them
  EXPECT_TRUE(r->return_token_strs);

  r = ParseTokenizeRequest(Obj(R"({"model":"m","prompt":"x","add_special_tokens":false})"));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->add_special_tokens);

  auto err = [](std::string_view body) {
    auto r = ParseTokenizeRequest(Obj(body));
    EXPECT_FALSE(r.has_value()) << body;
    return r ? std::string("(parsed)") : r.error().param;
  };
  EXPECT_EQ(err(R"({"prompt":"x"})"), "model");
  EXPECT_EQ(err(R"({"model":"m"})"), "prompt");
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","messages":[]})"), "messages");
  EXPECT_EQ(err(R"({"model":"m","prompt":[1]})"), "prompt");
  EXPECT_EQ(err(R"({"model":"m","messages":[]})"), "messages");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"x","content":""}]})"), "messages[0].role");
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","add_special_tokens":1})"), "add_special_tokens");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"user","content":""}],
                    "add_generation_prompt":"no"})"),
            "add_generation_prompt");
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","return_token_strs":0})"), "return_token_strs");
}

TEST(OpenAiTypes, DetokenizeShape) {
  auto r = ParseDetokenizeRequest(Obj(R"({"model":"m","tokens":[1,2,0]})"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->model, "m");
  EXPECT_THAT(r->tokens, ElementsAre(1, 2, 0));
  EXPECT_TRUE(ParseDetokenizeRequest(Obj(R"({"model":"m","tokens":[]})")).has_value());
  auto err = [](std::string_view body) {
    auto r = ParseDetokenizeRequest(Obj(body));
    EXPECT_FALSE(r.has_value()) << body;
    return r ? std::string("(parsed)") : r.error().param;
  };
  EXPECT_EQ(err(R"({"tokens":[1]})"), "model");
  EXPECT_EQ(err(R"({"model":"m"})"), "tokens");
  EXPECT_EQ(err(R"({"model":"m","tokens":"1 2"})"), "tokens");
  EXPECT_EQ(err(R"({"model":"m","tokens":[1,-1]})"), "tokens[1]");
  EXPECT_EQ(err(R"({"model":"m","tokens":[1,"2"]})"), "tokens[1]");
}

// ---- responses

ResponseMeta Meta(std::string id = "chatcmpl-abc") {
  return ResponseMeta{std::move(id), 1700000000, "ns/model", "fp_yunzhi"};
}

json::object Parse(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << text;
  return v.is_object() ? v.as_object() : json::object();
}

void ExpectUsage(const json::value& u, int64_t prompt, int64_t completion, int64_t cached) {
  ASSERT_TRUE(u.is_object());
  EXPECT_EQ(u.at("prompt_tokens"), prompt);
  EXPECT_EQ(u.at("completion_tokens"), completion);
  EXPECT_EQ(u.at("total_tokens"), prompt + completion);
  EXPECT_EQ(u.at("prompt_tokens_details").at("cached_tokens"), cached);
  EXPECT_TRUE(u.at("completion_tokens_details").at("reasoning_tokens").is_int64());
}

TEST(OpenAiTypes, ChatCompletionRoundTrip) {
  std::vector<ChatChoice> choices(2);
  choices[0].index = 0;
  choices[0].content = "Hello \"world\"\n";
  choices[0].finish_reason = FinishReason::kLength;
  choices[0].logprobs =
      std::vector<TokenLogprob>{{"Hello", -0.25f, {{"Hello", -0.25f}, {"Hi", -1.5f}}, 0},
                                {"\xe4\xbd", -std::numeric_limits<float>::infinity(), {}, 0}};
  choices[1].index = 1;
  choices[1].tool_calls = {{"call_1", "get_weather", R"({"city":"Paris"})"},
                           {"call_2", "noop", "{}"}};
  choices[1].finish_reason = FinishReason::kToolCalls;
  Usage usage{12, 7, 4, 0};
  json::object o = Parse(ChatCompletionJson(Meta(), choices, usage));

  EXPECT_EQ(o.at("id"), "chatcmpl-abc");
  EXPECT_EQ(o.at("object"), "chat.completion");
  EXPECT_EQ(o.at("created"), 1700000000);
  EXPECT_EQ(o.at("model"), "ns/model");
  EXPECT_EQ(o.at("system_fingerprint"), "fp_yunzhi");
  ExpectUsage(o.at("usage"), 12, 7, 4);
  const json::array& cs = o.at("choices").as_array();
  ASSERT_EQ(cs.size(), 2u);

  const json::object& c0 = cs[0].as_object();
  EXPECT_EQ(c0.at("index"), 0);
  EXPECT_EQ(c0.at("finish_reason"), "length");
  const json::object& m0 = c0.at("message").as_object();
  EXPECT_EQ(m0.at("role"), "assistant");
  EXPECT_EQ(m0.at("content"), "Hello \"world\"\n");
  EXPECT_TRUE(m0.at("refusal").is_null());
  EXPECT_FALSE(m0.contains("tool_calls"));
  const json::object& lp = c0.at("logprobs").as_object();
  EXPECT_TRUE(lp.at("refusal").is_null());
  const json::array& content = lp.at("content").as_array();
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0].at("token"), "Hello");
  EXPECT_EQ(content[0].at("logprob"), -0.25);
  EXPECT_EQ(content[0].at("bytes"), json::parse("[72,101,108,108,111]"));
  const json::array& top = content[0].at("top_logprobs").as_array();
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[1].at("token"), "Hi");
  EXPECT_EQ(top[1].at("logprob"), -1.5);
  EXPECT_EQ(top[1].at("bytes"), json::parse("[72,105]"));
  // Half a character: the text is made valid, the bytes are exact; -inf becomes -9999.
  EXPECT_EQ(content[1].at("token"), "\xef\xbf\xbd");
  EXPECT_EQ(content[1].at("bytes"), json::parse("[228,189]"));
  EXPECT_EQ(content[1].at("logprob"), -9999.0);
  EXPECT_TRUE(content[1].at("top_logprobs").as_array().empty());

  const json::object& c1 = cs[1].as_object();
  EXPECT_EQ(c1.at("finish_reason"), "tool_calls");
  EXPECT_TRUE(c1.at("logprobs").is_null());
  const json::object& m1 = c1.at("message").as_object();
  EXPECT_TRUE(m1.at("content").is_null());
  const json::array& calls = m1.at("tool_calls").as_array();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].at("id"), "call_1");
  EXPECT_EQ(calls[0].at("type"), "function");
  EXPECT_EQ(calls[0].at("function").at("name"), "get_weather");
  EXPECT_EQ(calls[0].at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(calls[1].at("function").at("arguments"), "{}");
}

TEST(OpenAiTypes, FloatLogprobsAreWrittenShort) {
  ChatChoice c;
  c.content = "x";
  c.logprobs = std::vector<TokenLogprob>{{"x", -0.1f, {}, 0}};
  std::string text = ChatCompletionJson(Meta(), std::span(&c, 1), {});
  EXPECT_THAT(text, HasSubstr(R"("logprob":-1E-1)"));
}

TEST(OpenAiTypes, ReasoningAndFingerprintAreOptional) {
  ChatChoice c;
  c.content = "answer";
  c.reasoning_content = "thought";
  ResponseMeta meta = Meta();
  meta.system_fingerprint.clear();
  json::object o = Parse(ChatCompletionJson(meta, std::span(&c, 1), {}));
  EXPECT_FALSE(o.contains("system_fingerprint"));
  EXPECT_EQ(o.at("choices").at(0).at("message").at("reasoning_content"), "thought");
  EXPECT_EQ(o.at("choices").at(0).at("finish_reason"), "stop");
}

TEST(OpenAiTypes, ChatStreamChunks) {
  ResponseMeta meta = Meta();
  // First chunk: the role.
  ChatDelta first;
  first.role = "assistant";
  first.content = "";
  json::object o = Parse(ChatCompletionChunkJson(meta, std::span(&first, 1), true));
  EXPECT_EQ(o.at("object"), "chat.completion.chunk");
  EXPECT_EQ(o.at("id"), "chatcmpl-abc");
  EXPECT_EQ(o.at("created"), 1700000000);
  EXPECT_EQ(o.at("model"), "ns/model");
  EXPECT_TRUE(o.at("usage").is_null());  // include_usage: null on every chunk but the last
  const json::object& c = o.at("choices").at(0).as_object();
  EXPECT_EQ(c.at("index"), 0);
  EXPECT_EQ(c.at("delta").at("role"), "assistant");
  EXPECT_EQ(c.at("delta").at("content"), "");
  EXPECT_TRUE(c.at("finish_reason").is_null());
  EXPECT_TRUE(c.at("logprobs").is_null());

  // Content with logprobs, two choices in one chunk, without include_usage.
  std::vector<ChatDelta> deltas(2);
  deltas[0].content = "Hel";
  deltas[0].logprobs = std::vector<TokenLogprob>{{"Hel", -0.5f, {{"Hel", -0.5f}}, 0}};
  deltas[1].index = 1;
  deltas[1].content = "lo";
  o = Parse(ChatCompletionChunkJson(meta, deltas, false));
  EXPECT_FALSE(o.contains("usage"));
  ASSERT_EQ(o.at("choices").as_array().size(), 2u);
  EXPECT_FALSE(o.at("choices").at(0).at("delta").as_object().contains("role"));
  EXPECT_EQ(o.at("choices").at(0).at("delta").at("content"), "Hel");
  const json::value& lp = o.at("choices").at(0).at("logprobs");
  EXPECT_EQ(lp.at("content").at(0).at("token"), "Hel");
  EXPECT_EQ(lp.at("content").at(0).at("top_logprobs").at(0).at("logprob"), -0.5);
  EXPECT_TRUE(lp.at("refusal").is_null());
  EXPECT_EQ(o.at("choices").at(1).at("index"), 1);

  // Tool calls: the first piece has id, type and name; later ones argument text only.
  ChatDelta tc;
  tc.tool_calls = {{0, "call_9", "get_weather", ""}, {1, std::nullopt, std::nullopt, "{\"ci"}};
  o = Parse(ChatCompletionChunkJson(meta, std::span(&tc, 1), false));
  const json::array& calls = o.at("choices").at(0).at("delta").at("tool_calls").as_array();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].at("index"), 0);
  EXPECT_EQ(calls[0].at("id"), "call_9");
  EXPECT_EQ(calls[0].at("type"), "function");
  EXPECT_EQ(calls[0].at("function").at("name"), "get_weather");
  EXPECT_EQ(calls[0].at("function").at("arguments"), "");
  EXPECT_EQ(calls[1].at("index"), 1);
  EXPECT_FALSE(calls[1].as_object().contains("id"));
  EXPECT_FALSE(calls[1].as_object().contains("type"));
  EXPECT_FALSE(calls[1].at("function").as_object().contains("name"));
  EXPECT_EQ(calls[1].at("function").at("arguments"), "{\"ci");

  // The finish chunk: empty delta.
  ChatDelta fin;
  fin.finish_reason = FinishReason::kToolCalls;
  o = Parse(ChatCompletionChunkJson(meta, std::span(&fin, 1), true));
  EXPECT_TRUE(o.at("choices").at(0).at("delta").as_object().empty());
  EXPECT_EQ(o.at("choices").at(0).at("finish_reason"), "tool_calls");

  // The usage chunk: no choices.
  o = Parse(ChatCompletionUsageChunkJson(meta, Usage{5, 3, 0, 1}));
  EXPECT_EQ(o.at("object"), "chat.completion.chunk");
  EXPECT_TRUE(o.at("choices").as_array().empty());
  ExpectUsage(o.at("usage"), 5, 3, 0);
  EXPECT_EQ(o.at("usage").at("completion_tokens_details").at("reasoning_tokens"), 1);
}

TEST(OpenAiTypes, TextCompletionRoundTrip) {
  std::vector<CompletionChoice> choices(2);
  choices[0].index = 0;
  choices[0].text = "Once upon";
  choices[0].finish_reason = FinishReason::kLength;
  choices[0].logprobs = std::vector<TokenLogprob>{
      {"Once", std::nullopt, {}, 0},  // an echoed first prompt token: no logprob
      {" upon", -0.75f, {{" upon", -0.75f}, {" a", -2.0f}, {" upon", -3.0f}}, 4}};
  choices[1].index = 1;
  choices[1].text = "x";
  json::object o = Parse(TextCompletionJson(Meta("cmpl-1"), choices, Usage{3, 2, 0, 0}));
  EXPECT_EQ(o.at("id"), "cmpl-1");
  EXPECT_EQ(o.at("object"), "text_completion");
  EXPECT_EQ(o.at("created"), 1700000000);
  EXPECT_EQ(o.at("model"), "ns/model");
  ExpectUsage(o.at("usage"), 3, 2, 0);
  const json::object& c0 = o.at("choices").at(0).as_object();
  EXPECT_EQ(c0.at("text"), "Once upon");
  EXPECT_EQ(c0.at("index"), 0);
  EXPECT_EQ(c0.at("finish_reason"), "length");
  const json::object& lp = c0.at("logprobs").as_object();
  EXPECT_EQ(lp.at("tokens"), json::parse(R"(["Once"," upon"])"));
  EXPECT_EQ(lp.at("token_logprobs"), json::parse("[null,-0.75]"));
  EXPECT_TRUE(lp.at("top_logprobs").at(0).is_null());
  // A token text seen twice keeps its first (most likely) entry.
  EXPECT_EQ(lp.at("top_logprobs").at(1), json::parse(R"({" upon":-0.75," a":-2.0})"));
  EXPECT_EQ(lp.at("text_offset"), json::parse("[0,4]"));
  const json::object& c1 = o.at("choices").at(1).as_object();
  EXPECT_EQ(c1.at("finish_reason"), "stop");
  EXPECT_TRUE(c1.at("logprobs").is_null());
}

TEST(OpenAiTypes, TextCompletionStreamChunks) {
  CompletionChoice c;
  c.text = "tok";
  json::object o = Parse(TextCompletionChunkJson(Meta("cmpl-1"), std::span(&c, 1), true));
  EXPECT_EQ(o.at("object"), "text_completion");
  EXPECT_TRUE(o.at("usage").is_null());
  EXPECT_TRUE(o.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_EQ(o.at("choices").at(0).at("text"), "tok");
  c.text.clear();
  c.finish_reason = FinishReason::kStop;
  o = Parse(TextCompletionChunkJson(Meta("cmpl-1"), std::span(&c, 1), false));
  EXPECT_FALSE(o.contains("usage"));
  EXPECT_EQ(o.at("choices").at(0).at("finish_reason"), "stop");
  o = Parse(TextCompletionUsageChunkJson(Meta("cmpl-1"), Usage{1, 2, 0, 0}));
  EXPECT_TRUE(o.at("choices").as_array().empty());
  ExpectUsage(o.at("usage"), 1, 2, 0);
}

TEST(OpenAiTypes, TokenizeResponses) {
  std::vector<int32_t> tokens{1, 15043, 0};
  json::object o = Parse(TokenizeResponseJson(tokens, 4096));
  EXPECT_EQ(o.at("count"), 3);
  EXPECT_EQ(o.at("max_model_len"), 4096);
  EXPECT_EQ(o.at("tokens"), json::parse("[1,15043,0]"));
  EXPECT_FALSE(o.contains("token_strs"));
  std::vector<std::string> strs{"<s>", "\xe2\x96\x81Hello", "\xff"};
  o = Parse(TokenizeResponseJson(tokens, 4096, &strs));
  EXPECT_EQ(o.at("token_strs"), json::parse(R"(["<s>","▁Hello","�"])"));
  o = Parse(DetokenizeResponseJson("Hello\x01\xc3"));
  EXPECT_EQ(o.at("prompt"), "Hello\x01\xef\xbf\xbd");
}

TEST(OpenAiTypes, StreamErrorHasTheOpenAiShape) {
  json::object o = Parse(StreamErrorJson(Error(Code::kInvalidArgument, "bad", "n", "x")));
  EXPECT_EQ(o.at("error").at("message"), "bad");
  EXPECT_EQ(o.at("error").at("type"), "invalid_request_error");
  EXPECT_EQ(o.at("error").at("param"), "n");
  EXPECT_EQ(o.at("error").at("code"), "x");
}

TEST(OpenAiTypes, ToValidUtf8ReplacesEachMaximalIllFormedSubpart) {
  EXPECT_EQ(ToValidUtf8(""), "");
  EXPECT_EQ(ToValidUtf8("plain \x7f"), "plain \x7f");
  EXPECT_EQ(ToValidUtf8("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"),
            "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(ToValidUtf8("\x80"), r);                          // lone continuation
  EXPECT_EQ(ToValidUtf8("\xc0\xaf"), r + r);                  // overlong lead
  EXPECT_EQ(ToValidUtf8("\xe0\x80\xaf"), r + r + r);          // overlong 3-byte
  EXPECT_EQ(ToValidUtf8("\xed\xa0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(ToValidUtf8("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xf5"), r);
  EXPECT_EQ(ToValidUtf8("\xe4\xb8"), r);         // truncated at the end
  EXPECT_EQ(ToValidUtf8("\xe4\xb8x"), r + "x");  // truncated in the middle
  EXPECT_EQ(ToValidUtf8("\xf0\x9f\x98"), r);
  EXPECT_EQ(ToValidUtf8("a\xff"
                        "b"),
            "a" + r + "b");
  EXPECT_EQ(ToValidUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  // Every single byte and every pair gives valid UTF-8 that Boost.JSON accepts.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 7) {
      std::string s{static_cast<char>(a), static_cast<char>(b)};
      boost::system::error_code ec;
      json::parse(DetokenizeResponseJson(s), ec);
      ASSERT_FALSE(ec) << a << " " << b;
    }
  }
}

TEST(OpenAiTypes, IdsHaveOpenAiForms) {
  const std::string a = NewResponseId("chatcmpl");
  const std::string b = NewResponseId("chatcmpl");
  EXPECT_THAT(a, ::testing::MatchesRegex("chatcmpl-[0-9A-Z]{26}"));
  EXPECT_NE(a, b);
  EXPECT_THAT(NewResponseId("cmpl"), ::testing::MatchesRegex("cmpl-[0-9A-Z]{26}"));
  EXPECT_THAT(NewToolCallId(), ::testing::MatchesRegex("call_[0-9A-Z]{26}"));
}

TEST(OpenAiTypes, FinishReasonNames) {
  EXPECT_EQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonName(FinishReason::kToolCalls), "tool_calls");
  EXPECT_EQ(FinishReasonName(FinishReason::kContentFilter), "content_filter");
}

}  // namespace
}  // namespace yunzhi::api
