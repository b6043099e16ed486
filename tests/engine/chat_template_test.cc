// ChatTemplate against the reference: every chat template in the shared test data is rendered by
// Python's Jinja2 (tests/reference/render_chat_template.py, set up exactly as Hugging Face
// transformers renders) over a fixed set of conversations, and our output must be byte for byte
// the same. When Jinja2 raises (the template rejects the conversation), Render must fail too;
// when the template raised it itself, with the same message.
//
// Python 3 with Jinja2 is a prerequisite: without it these tests fail, they never skip.
// The interpreter is $YUNZHI_PYTHON3, else the one CMake found, else `python3` on PATH.

#include "yunzhi/engine/chat_template.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/wait.h>

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;

std::string PythonInterpreter() {
  if (const char* env = std::getenv("YUNZHI_PYTHON3"); env != nullptr && *env != '\0') return env;
#ifdef YUNZHI_PYTHON3
  if (std::string(YUNZHI_PYTHON3).size() > 0) return YUNZHI_PYTHON3;
#endif
  return "python3";
}

// All chat templates in the test data: chat_templates/*.jinja and the chat_template of every
// tokenizer/hf/*/tokenizer_config.json.
std::vector<std::string> TemplatePaths() {
  std::vector<std::string> paths;
  fs::path root(YUNZHI_TESTDATA_DIR);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root / "chat_templates", ec)) {
    if (entry.path().extension() == ".jinja") paths.push_back(entry.path().string());
  }
  for (const auto& entry : fs::directory_iterator(root / "tokenizer" / "hf", ec)) {
    fs::path config = entry.path() / "tokenizer_config.json";
    if (fs::exists(config)) paths.push_back(config.string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::string TestName(const std::string& path) {
  fs::path p(path);
  std::string name = p.filename() == "tokenizer_config.json"
                         ? p.parent_path().filename().string() + "_tokenizer_config"
                         : p.stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

// Runs the reference script on one template; returns its stdout, or fails the test.
bool RunReference(const std::string& template_path, std::string* out) {
  std::string script = std::string(YUNZHI_SOURCE_DIR) + "/tests/reference/render_chat_template.py";
  std::string command = "'" + PythonInterpreter() + "' '" + script + "' '" + template_path + "'";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run: " << command;
    return false;
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  int status = pclose(pipe);
  if (status != 0) {
    ADD_FAILURE() << "the Python reference failed (exit status "
                  << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << "): " << command
                  << "\nPython 3 with Jinja2 (Debian: python3-jinja2) is required for this test.";
    return false;
  }
  return true;
}

// Where two renderings first differ, with some context.
std::string DescribeDifference(const std::string& expected, const std::string& actual) {
  size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
  size_t from = i > 60 ? i - 60 : 0;
  std::ostringstream s;
  s << "first difference at byte " << i << " (expected " << expected.size() << " bytes, got "
    << actual.size() << ")\n  expected: ..." << TemplateValue(expected.substr(from, 140)).ToJson()
    << "\n  actual:   ..." << TemplateValue(actual.substr(from, 140)).ToJson();
  return s.str();
}

class ChatTemplateReferenceTest : public testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateReferenceTest, RendersLikeJinja2) {
  std::string json;
  ASSERT_TRUE(RunReference(GetParam(), &json));
  Result<TemplateValue> reference = TemplateValue::ParseJson(json);
  ASSERT_TRUE(reference.has_value()) << reference.error().ToString();
  const TemplateValue& templates = *reference->Find("templates");
  ASSERT_EQ(templates.as_array().size(), 1u);
  const TemplateValue& t = templates.as_array()[0];
  const std::string& name = t.Find("name")->as_string();
  auto now = std::chrono::system_clock::time_point(
      std::chrono::seconds(reference->Find("now_epoch_seconds")->as_int()));

  Result<ChatTemplate> parsed = ChatTemplate::Parse(t.Find("source")->as_string());
  const TemplateValue::Array& cases = t.Find("cases")->as_array();
  if (cases.size() == 1 && cases[0].Find("scenario")->as_string() == "<parse>") {
    EXPECT_FALSE(parsed.has_value()) << name << ": Jinja2 rejects the template but we accept it";
    return;
  }
  ASSERT_TRUE(parsed.has_value()) << name << ": " << parsed.error().ToString();

  int n_identical = 0, n_both_failed = 0, n_mismatch = 0;
  for (const TemplateValue& c : cases) {
    const std::string& scenario = c.Find("scenario")->as_string();
    const TemplateValue& in = *c.Find("input");
    ChatInput input;
    input.messages = *in.Find("messages");
    input.tools = *in.Find("tools");
    input.documents = *in.Find("documents");
    input.add_generation_prompt = in.Find("add_generation_prompt")->as_bool();
    if (!t.Find("bos_token")->is_null()) input.bos_token = t.Find("bos_token")->as_string();
    if (!t.Find("eos_token")->is_null()) input.eos_token = t.Find("eos_token")->as_string();
    input.extra = in.Find("extra")->as_object();
    input.now = now;

    Result<std::string> ours = parsed->Render(input);
    bool reference_ok = c.Find("ok")->as_bool();
    if (reference_ok) {
      const std::string& expected = c.Find("output")->as_string();
      if (!ours.has_value()) {
        ++n_mismatch;
        ADD_FAILURE() << name << " / " << scenario
                      << ": Jinja2 renders, we fail: " << ours.error().ToString();
      } else if (*ours != expected) {
        ++n_mismatch;
        ADD_FAILURE() << name << " / " << scenario << ": " << DescribeDifference(expected, *ours);
      } else {
        ++n_identical;
      }
      continue;
    }
    const std::string& error_type = c.Find("error_type")->as_string();
    const std::string& error = c.Find("error")->as_string();
    if (ours.has_value()) {
      ++n_mismatch;
      ADD_FAILURE() << name << " / " << scenario << ": Jinja2 raises " << error_type << " ("
                    << error << ") but we render:\n"
                    << *ours;
      continue;
    }
    if (error_type == "TemplateError") {  // raise_exception(): the message reaches the client
      if (ours.error().code != Code::kInvalidArgument || ours.error().message != error ||
          ours.error().detail != "chat_template_exception") {
        ++n_mismatch;
        ADD_FAILURE() << name << " / " << scenario << ": raise_exception(\"" << error
                      << "\") expected, got " << ours.error().ToString();
        continue;
      }
    }
    ++n_both_failed;
    if (std::getenv("YUNZHI_CHAT_TEMPLATE_VERBOSE") != nullptr) {
      std::printf("[ both fail ] %s / %s\n    jinja2: %s: %s\n    ours:   %s\n", name.c_str(),
                  scenario.c_str(), error_type.c_str(), error.c_str(),
                  ours.error().ToString().c_str());
    }
  }
  std::printf(
      "[ reference ] %-55s %2d/%zu scenarios agree (%d identical renderings, %d "
      "rejected by both), %d differ\n",
      name.c_str(), n_identical + n_both_failed, cases.size(), n_identical, n_both_failed,
      n_mismatch);
  RecordProperty("scenarios", static_cast<int>(cases.size()));
  RecordProperty("agree", n_identical + n_both_failed);
  EXPECT_EQ(n_mismatch, 0);
  EXPECT_GT(n_identical, 0) << name << ": no scenario rendered at all";
}

INSTANTIATE_TEST_SUITE_P(SharedTestdata, ChatTemplateReferenceTest,
                         testing::ValuesIn(TemplatePaths()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return TestName(info.param);
                         });

TEST(ChatTemplateReference, FindsEveryTemplateInTheTestData) {
  // 15 templates from llama.cpp's collection and 2 tokenizer_config.json files.
  EXPECT_GE(TemplatePaths().size(), 17u);
}

// ---- public API behaviour on real templates ----

ChatInput Conversation() {
  ChatInput input;
  input.messages = TemplateValue::Array{
      TemplateValue::Object{{"role", "system"}, {"content", "Be brief."}},
      TemplateValue::Object{{"role", "user"}, {"content", "Hi"}},
  };
  return input;
}

std::string ReadTemplate(const std::string& name) {
  std::string path = std::string(YUNZHI_TESTDATA_DIR) + "/chat_templates/" + name;
  FILE* f = std::fopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  std::string text;
  if (f != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return text;
}

TEST(ChatTemplate, RaiseExceptionBecomesInvalidArgumentWithTheTemplatesMessage) {
  Result<ChatTemplate> gemma = ChatTemplate::Parse(ReadTemplate("google-gemma-2-2b-it.jinja"));
  ASSERT_TRUE(gemma.has_value()) << gemma.error().ToString();
  Result<std::string> out = gemma->Render(Conversation());
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, Code::kInvalidArgument);
  EXPECT_EQ(out.error().message, "System role not supported");
  EXPECT_EQ(out.error().param, "messages");
  EXPECT_EQ(out.error().detail, "chat_template_exception");
}

TEST(ChatTemplate, RendersQwen3WithEnableThinkingFalse) {
  Result<ChatTemplate> qwen = ChatTemplate::Parse(ReadTemplate("Qwen-Qwen3-0.6B.jinja"));
  ASSERT_TRUE(qwen.has_value()) << qwen.error().ToString();
  ChatInput input = Conversation();
  input.extra.emplace_back("enable_thinking", false);
  Result<std::string> out = qwen->Render(input);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_EQ(*out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, StrftimeNowUsesTheInjectedTime) {
  Result<ChatTemplate> llama =
      ChatTemplate::Parse(ReadTemplate("meta-llama-Llama-3.2-3B-Instruct.jinja"));
  ASSERT_TRUE(llama.has_value()) << llama.error().ToString();
  ChatInput input = Conversation();
  input.bos_token = "<|begin_of_text|>";
  // 2025-03-04 05:06:07 UTC
  input.now = std::chrono::system_clock::time_point(std::chrono::seconds(1741064767));
  Result<std::string> out = llama->Render(input);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_NE(out->find("Today Date: 04 Mar 2025\n"), std::string::npos) << *out;
}

TEST(ChatTemplate, ChatMlFallbackRendersStringsAndTextParts) {
  ChatInput input;
  input.messages = TemplateValue::Array{
      TemplateValue::Object{{"role", "system"}, {"content", "S"}},
      TemplateValue::Object{
          {"role", "user"},
          {"content",
           TemplateValue::Array{TemplateValue::Object{{"type", "text"}, {"text", "a"}},
                                TemplateValue::Object{{"type", "image_url"}},
                                TemplateValue::Object{{"type", "text"}, {"text", "b"}}}}},
  };
  Result<std::string> out = ChatTemplate::ChatMlFallback().Render(input);
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_EQ(*out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nab<|im_end|>\n"
            "<|im_start|>assistant\n");
  input.add_generation_prompt = false;
  out = ChatTemplate::ChatMlFallback().Render(input);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nab<|im_end|>\n");
}

}  // namespace
}  // namespace yunzhi::engine
