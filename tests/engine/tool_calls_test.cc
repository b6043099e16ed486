#include "yunzhi/engine/tool_calls.h"

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "yunzhi/engine/template_value.h"

namespace yunzhi::engine {
namespace json_test {  // json_constraint_test.cc
const Tokenizer& SmallTokenizer();
int32_t EndId();
std::vector<int32_t> RandomWalk(JsonConstraint& c, const Tokenizer& tok, uint64_t seed,
                                int64_t budget, int32_t end_id, bool* ended);
bool Validates(const TemplateValue& v, const TemplateValue& schema, const TemplateValue& root,
               std::string* why);
}  // namespace json_test

namespace {

std::string ReadTemplate(const std::string& name) {
  std::ifstream in(std::string(YUNZHI_TESTDATA_DIR) + "/chat_templates/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ToolCalls, DetectsSyntaxFromTheShippedTemplates) {
  const std::vector<std::pair<std::string, ToolCallSyntax>> cases = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallSyntax::kHermes},
      {"Qwen-Qwen3-0.6B.jinja", ToolCallSyntax::kHermes},
      {"Qwen-QwQ-32B.jinja", ToolCallSyntax::kHermes},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallSyntax::kHermes},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallSyntax::kMistral},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallSyntax::kMistralArgs},
      {"google-gemma-2-2b-it.jinja", ToolCallSyntax::kNone},
      {"microsoft-Phi-3.5-mini-instruct.jinja", ToolCallSyntax::kNone},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ToolCallSyntax::kNone},
  };
  for (const auto& [name, syntax] : cases)
    EXPECT_EQ(DetectToolCallSyntax(ReadTemplate(name)), syntax) << name;
}

TEST(ToolCalls, ParsesHermesCallsAndKeepsTextAround) {
  ParsedOutput out = ParseToolCalls(
      ToolCallSyntax::kHermes,
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\":\"t\",\"arguments\":{}}\n</tool_call>");
  EXPECT_EQ(out.content, "Let me check.\n\n");
  ASSERT_EQ(out.tool_calls.size(), 2u);
  EXPECT_EQ(out.tool_calls[0], (ToolCall{"get_weather", "{\"city\":\"Paris\"}"}));
  EXPECT_EQ(out.tool_calls[1], (ToolCall{"t", "{}"}));
}

TEST(ToolCalls, MalformedCallsStayContent) {
  const std::vector<std::pair<ToolCallSyntax, std::string>> cases = {
      {ToolCallSyntax::kHermes, "a<tool_call>{\"name\": 1}</tool_call>b"},
      {ToolCallSyntax::kHermes, "a<tool_call>not json</tool_call>"},
      {ToolCallSyntax::kHermes, "<tool_call>{\"name\":\"f\",\"arguments\":{"},
      {ToolCallSyntax::kHermes, "<tool_ca"},
      {ToolCallSyntax::kLlama3Json, "{\"name\": \"f\", \"parameters\": {}} trailing"},
      {ToolCallSyntax::kLlama3Json, "{\"nom\": \"f\"}"},
      {ToolCallSyntax::kLlama3Json, "<|python_tag|>brave_search.call(query=\"x\")"},
      {ToolCallSyntax::kMistral, "x[TOOL_CALLS][{\"name\": \"f\", \"arguments\": 3}]"},
      {ToolCallSyntax::kMistralArgs, "[TOOL_CALLS]f[ARGS]{\"a\":"},
      {ToolCallSyntax::kMistralArgs, "[TOOL_CALLS]bad name[ARGS]{}"},
  };
  for (const auto& [syntax, text] : cases) {
    ParsedOutput out = ParseToolCalls(syntax, text);
    EXPECT_TRUE(out.tool_calls.empty()) << text;
    EXPECT_EQ(out.content, text);
  }
}

TEST(ToolCalls, ParsesQwen3CoderXmlBodies) {
  ParsedOutput out = ParseToolCalls(
      ToolCallSyntax::kHermes,
      "ok\n<tool_call>\n<function=run>\n<parameter=cmd>\nls -l\n\"x\"\n</parameter>\n"
      "<parameter=n>\n3\n</parameter>\n<parameter=opts>\n{\"a\": [1]}\n</parameter>\n"
      "</function>\n</tool_call>");
  EXPECT_EQ(out.content, "ok\n");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0],
            (ToolCall{"run", "{\"cmd\":\"ls -l\\n\\\"x\\\"\",\"n\":3,\"opts\":{\"a\":[1]}}"}));
  const std::string bad =
      "<tool_call>\n<function=run>\n<parameter=cmd>\nls\n</function>\n</tool_call>";
  out = ParseToolCalls(ToolCallSyntax::kHermes, bad);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_EQ(out.content, bad);
}

TEST(ToolCalls, ParsesUnterminatedHermesCallAtTheEnd) {
  ParsedOutput out =
      ParseToolCalls(ToolCallSyntax::kHermes, "<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n");
  EXPECT_EQ(out.content, "");
  ASSERT_EQ(out.tool_calls.size(), 1u);
}

TEST(ToolCalls, ParsesLlama3Calls) {
  ParsedOutput out = ParseToolCalls(
      ToolCallSyntax::kLlama3Json,
      " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\", \"days\": 2}}");
  EXPECT_EQ(out.content, "");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0], (ToolCall{"get_weather", "{\"city\":\"Oslo\",\"days\":2}"}));
  out = ParseToolCalls(ToolCallSyntax::kLlama3Json,
                       "<|python_tag|>{\"name\": \"a\", \"arguments\": \"{\\\"x\\\":1}\"}; "
                       "{\"name\": \"b\", \"parameters\": {}}");
  ASSERT_EQ(out.tool_calls.size(), 2u);
  EXPECT_EQ(out.tool_calls[0], (ToolCall{"a", "{\"x\":1}"}));
  EXPECT_EQ(ParseToolCalls(ToolCallSyntax::kLlama3Json, "Hello {\"name\": \"a\"}").content,
            "Hello {\"name\": \"a\"}");
}

TEST(ToolCalls, ParsesBothMistralForms) {
  for (ToolCallSyntax syntax : {ToolCallSyntax::kMistral, ToolCallSyntax::kMistralArgs}) {
    ParsedOutput out =
        ParseToolCalls(syntax,
                       "ok [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}, "
                       "{\"name\": \"g\", \"arguments\": {}, \"id\": \"abcdefghi\"}]");
    EXPECT_EQ(out.content, "ok ");
    ASSERT_EQ(out.tool_calls.size(), 2u);
    EXPECT_EQ(out.tool_calls[0], (ToolCall{"f", "{\"a\":1}"}));
    out = ParseToolCalls(syntax,
                         "[TOOL_CALLS]f[ARGS]{\"a\": [1, \"]\"]}[TOOL_CALLS]g[CALL_ID]x1[ARGS]{}");
    EXPECT_EQ(out.content, "");
    ASSERT_EQ(out.tool_calls.size(), 2u);
    EXPECT_EQ(out.tool_calls[0], (ToolCall{"f", "{\"a\":[1,\"]\"]}"}));
    EXPECT_EQ(out.tool_calls[1], (ToolCall{"g", "{}"}));
  }
}

void ExpectStreamingEqualsBatch(ToolCallSyntax syntax, const std::string& text) {
  ParsedOutput batch = ParseToolCalls(syntax, text);
  auto run = [&](const std::vector<size_t>& cuts) {
    ToolCallStreamParser p(syntax);
    ParsedOutput all;
    size_t prev = 0;
    for (size_t cut : cuts) {
      ParsedOutput o = p.Push(std::string_view(text).substr(prev, cut - prev));
      all.content += o.content;
      all.tool_calls.insert(all.tool_calls.end(), o.tool_calls.begin(), o.tool_calls.end());
      prev = cut;
    }
    ParsedOutput o = p.Push(std::string_view(text).substr(prev));
    all.content += o.content;
    all.tool_calls.insert(all.tool_calls.end(), o.tool_calls.begin(), o.tool_calls.end());
    o = p.Finish();
    all.content += o.content;
    all.tool_calls.insert(all.tool_calls.end(), o.tool_calls.begin(), o.tool_calls.end());
    EXPECT_EQ(all.content, batch.content) << text;
    EXPECT_EQ(all.tool_calls, batch.tool_calls) << text;
  };
  for (size_t i = 0; i <= text.size(); ++i) run({i});
  std::mt19937 rng(3);
  for (int k = 0; k < 50; ++k) {
    std::vector<size_t> cuts;
    for (size_t i = 0; i < text.size(); ++i)
      if (rng() % 3 == 0) cuts.push_back(i);
    run(cuts);
  }
  // Byte by byte.
  std::vector<size_t> each;
  for (size_t i = 1; i < text.size(); ++i) each.push_back(i);
  run(each);
}

TEST(ToolCalls, StreamingEqualsBatchForEverySplit) {
  ExpectStreamingEqualsBatch(
      ToolCallSyntax::kHermes,
      "Hi <tool<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"</tool\"}}\n</tool_call>"
      " mid <tool_call>bad</tool_call><tool_call>{\"name\":\"g\",\"arguments\":{}}");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kHermes, "plain text, no calls <");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kLlama3Json,
                             "  <|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": 1}}");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kLlama3Json, " <|python_tail is text");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kLlama3Json, "text then {\"name\": \"f\"}");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kMistral,
                             "see [TOOL_CALL [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kMistralArgs,
                             "[TOOL_CALLS]f[ARGS]{\"x\": \"[TOOL_CALLS]\"}[TOOL_CALLS]g[ARGS]{}");
  ExpectStreamingEqualsBatch(ToolCallSyntax::kMistralArgs, "[TOOL_CALLS]broken");
}

TEST(ToolCalls, StreamingReleasesPlainTextEarly) {
  ToolCallStreamParser p(ToolCallSyntax::kHermes);
  EXPECT_EQ(p.Push("Hello <to").content, "Hello ");
  EXPECT_EQ(p.Push("day").content, "<today");
  ParsedOutput o = p.Push("<tool_call>{\"name\":\"f\",\"arguments\":{}}");
  EXPECT_EQ(o.content, "");
  EXPECT_TRUE(o.tool_calls.empty());
  o = p.Push("</tool_call>");
  ASSERT_EQ(o.tool_calls.size(), 1u);
}

const char* kWeatherSchema =
    R"({"type":"object","properties":{"city":{"type":"string","maxLength":8},
        "unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})";
const char* kAddSchema =
    R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},
        "required":["a","b"]})";

TEST(ToolCalls, ForcedCallRandomWalksParseBackIntoValidCalls) {
  const Tokenizer& tok = json_test::SmallTokenizer();
  std::vector<ToolSpec> tools = {
      {"get_weather", kWeatherSchema}, {"add", kAddSchema}, {"ping", ""}};
  std::map<std::string, TemplateValue> schemas = {
      {"get_weather", TemplateValue::ParseJson(kWeatherSchema).value()},
      {"add", TemplateValue::ParseJson(kAddSchema).value()},
      {"ping", TemplateValue::ParseJson("{\"type\":\"object\"}").value()}};
  for (ToolCallSyntax syntax :
       {ToolCallSyntax::kNone, ToolCallSyntax::kHermes, ToolCallSyntax::kLlama3Json,
        ToolCallSyntax::kMistral, ToolCallSyntax::kMistralArgs}) {
    for (std::optional<std::string> forced :
         {std::optional<std::string>(), std::optional<std::string>("add")}) {
      for (uint64_t seed = 0; seed < 40; ++seed) {
        auto c = MakeToolCallConstraint(tok, syntax, tools, forced);
        ASSERT_TRUE(c.has_value()) << c.error().ToString();
        int64_t budget = (*c)->MinCompletionBytes() + static_cast<int64_t>(seed % 5) * 10;
        bool ended = false;
        std::vector<int32_t> ids =
            json_test::RandomWalk(**c, tok, seed, budget, json_test::EndId(), &ended);
        std::string text = tok.Decode(ids);
        ASSERT_TRUE((*c)->IsComplete()) << text;
        ParsedOutput out = ParseToolCalls(
            syntax == ToolCallSyntax::kNone ? ToolCallSyntax::kHermes : syntax, text);
        ASSERT_EQ(out.tool_calls.size(), 1u) << static_cast<int>(syntax) << ": " << text;
        EXPECT_EQ(out.content, "") << text;
        const ToolCall& call = out.tool_calls[0];
        ASSERT_EQ(schemas.count(call.name), 1u) << text;
        if (forced) {
          EXPECT_EQ(call.name, *forced);
        }
        auto args = TemplateValue::ParseJson(call.arguments);
        ASSERT_TRUE(args.has_value()) << text;
        std::string why;
        EXPECT_TRUE(json_test::Validates(*args, schemas[call.name], schemas[call.name], &why))
            << text << ": " << why;
      }
    }
  }
}

TEST(ToolCalls, ForcedCallUsesMarkerTokensWhenTheVocabularyHasThem) {
  const Tokenizer& tok = json_test::SmallTokenizer();
  std::vector<ToolSpec> tools = {{"ping", ""}};
  auto c = MakeToolCallConstraint(tok, ToolCallSyntax::kHermes, tools, std::nullopt);
  ASSERT_TRUE(c.has_value());
  TokenBitmask mask(tok.n_vocab());
  ASSERT_TRUE((*c)->FillAllowed(mask).has_value());
  int32_t open = *tok.FindAddedToken("<tool_call>");
  for (int32_t i = 0; i < tok.n_vocab(); ++i) EXPECT_EQ(mask.IsAllowed(i), i == open) << i;
}

TEST(ToolCalls, ForcedHermesCallOnTheQwenVocabulary) {
  auto vocab = VocabFromHfDir(std::string(YUNZHI_TESTDATA_DIR) + "/tokenizer/hf/qwen2.5");
  ASSERT_TRUE(vocab.has_value());
  auto tok = Tokenizer::Create(std::move(*vocab));
  ASSERT_TRUE(tok.has_value());
  std::vector<ToolSpec> tools = {{"get_weather", kWeatherSchema}, {"add", kAddSchema}};
  TemplateValue schema = TemplateValue::ParseJson(kWeatherSchema).value();
  for (uint64_t seed = 0; seed < 5; ++seed) {
    auto c = MakeToolCallConstraint(*tok, ToolCallSyntax::kHermes, tools, "get_weather");
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    int32_t end = *tok->FindAddedToken("<|im_end|>");
    bool ended = false;
    std::vector<int32_t> ids = json_test::RandomWalk(**c, *tok, seed, 48, end, &ended);
    EXPECT_EQ(ids.front(), *tok->FindAddedToken("<tool_call>"));
    std::string text = tok->Decode(ids);
    ParsedOutput out = ParseToolCalls(ToolCallSyntax::kHermes, text);
    ASSERT_EQ(out.tool_calls.size(), 1u) << text;
    EXPECT_EQ(out.tool_calls[0].name, "get_weather");
    auto args = TemplateValue::ParseJson(out.tool_calls[0].arguments);
    ASSERT_TRUE(args.has_value());
    std::string why;
    EXPECT_TRUE(json_test::Validates(*args, schema, schema, &why)) << text << ": " << why;
  }
}

TEST(ToolCalls, ConstraintErrors) {
  const Tokenizer& tok = json_test::SmallTokenizer();
  std::vector<ToolSpec> tools = {{"a", ""}, {"a", ""}};
  auto c = MakeToolCallConstraint(tok, ToolCallSyntax::kHermes, tools, std::nullopt);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().param, "tools");
  tools = {{"a", R"({"type":"object","properties":{"x":{"pattern":"a"}}})"}};
  c = MakeToolCallConstraint(tok, ToolCallSyntax::kHermes, tools, std::nullopt);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("pattern"), std::string::npos);
  tools = {{"a", ""}};
  c = MakeToolCallConstraint(tok, ToolCallSyntax::kHermes, tools, std::string("b"));
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().param, "tool_choice");
  c = MakeToolCallConstraint(tok, ToolCallSyntax::kHermes, {}, std::nullopt);
  EXPECT_FALSE(c.has_value());
}

}  // namespace
}  // namespace yunzhi::engine
