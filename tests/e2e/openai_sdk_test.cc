// The OpenAI-compatible API driven by the official `openai` npm client, unmodified: each
// tests/e2e/openai/*.test.mjs file runs with node's built-in test runner against a fresh
// `yunzhi serve` into which stories260K and a random-weight model were imported.
//
// Prerequisites (an error, not a skip, when missing): node, and the npm packages of
// tests/e2e/openai, which `scripts/deps.sh test` installs with `npm ci` from the lockfile.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/process.h"

namespace yunzhi::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kBinary = YUNZHI_BINARY;
const std::string kMakeModel = YUNZHI_MAKE_MODEL;
const std::string kNodeDir = YUNZHI_SOURCE_DIR "/tests/e2e/openai";
const std::string kStories = YUNZHI_TESTDATA_DIR "/models/stories260K.gguf";
constexpr const char* kChatModel = "test/stories260k";
constexpr const char* kTinyModel = "test/tiny-random";
constexpr const char* kEmbedModel = "test/bge-random";  // a random bge-shaped encoder
constexpr const char* kRerankModel = "test/reranker-random";  // a random cross-encoder

// The program `name` on PATH (RunCommand executes a path, without a PATH search), or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= dirs.size()) {
    size_t end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    const fs::path candidate = fs::path(dirs.substr(begin, end - begin)) / name;
    std::error_code ec;
    if (end > begin && fs::is_regular_file(candidate, ec) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate.string();
    }
    begin = end + 1;
  }
  return "";
}

// The node test files, found when the test binary runs (and when ctest lists its tests).
std::vector<std::string> NodeTestFiles() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kNodeDir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 9 && name.ends_with(".test.mjs")) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

class OpenAiSdk : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kNodeDir + "/node_modules/openai/package.json"))
        << "the npm packages of " << kNodeDir << " are missing: run scripts/deps.sh test";
    node_ = FindOnPath("node");
    ASSERT_FALSE(node_.empty()) << "node is needed: run scripts/deps.sh test";

    const std::string tiny = dir_.path() + "/tiny.gguf";
    const CommandResult made = RunCommand({kMakeModel, "--preset", "tiny", "--gguf", tiny});
    ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
    Import(kStories, kChatModel);
    Import(tiny, kTinyModel);
    const std::string bge = dir_.path() + "/bge.gguf";
    const CommandResult made_bge =
        RunCommand({kMakeModel, "--arch", "bert", "--tokenizer", "--gguf", bge});
    ASSERT_EQ(made_bge.exit_code, 0) << made_bge.out << made_bge.err;
    Import(bge, kEmbedModel);
    const std::string reranker = dir_.path() + "/reranker";
    const CommandResult made_reranker = RunCommand(
        {kMakeModel, "--arch", "bert", "--classifier", "--tokenizer", "--hf", reranker});
    ASSERT_EQ(made_reranker.exit_code, 0) << made_reranker.out << made_reranker.err;
    Import(reranker, kRerankModel);

    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        kBinary, "serve", "--data-dir", data_dir(), "--port", "0", "--log-level", "warn"});
    ASSERT_TRUE(server_->WaitForOutput([](const std::string& out) {
      return out.find("serving on") != std::string::npos;
    })) << server_->out()
        << server_->err();
    std::smatch m;
    const std::string out = server_->out();
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))"))) << out;
    port_ = m[1];
    // The first start of a data dir prints the platform admin key.
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))"))) << out;
    admin_key_ = m[1];
  }

  void TearDown() override {
    if (!server_) return;
    server_->Signal(SIGTERM);
    EXPECT_EQ(server_->Wait(30s), 0) << server_->err();
  }

  void Import(const std::string& path, const std::string& name) {
    const CommandResult r =
        RunCommand({kBinary, "import", path, "--name", name, "--data-dir", data_dir()}, {}, 120s);
    ASSERT_EQ(r.exit_code, 0) << "yunzhi import " << path << ": " << r.out << r.err;
  }

  std::string data_dir() const { return dir_.path() + "/data"; }

  TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  std::string node_;
  std::string port_;
  std::string admin_key_;
};

TEST_P(OpenAiSdk, NodeTestsPass) {
  const std::map<std::string, std::string> env = {
      {"OPENAI_BASE_URL", "http://127.0.0.1:" + port_ + "/v1"},
      {"OPENAI_API_KEY", admin_key_},
      {"YUNZHI_CHAT_MODEL", kChatModel},
      {"YUNZHI_TINY_MODEL", kTinyModel},
      {"YUNZHI_EMBED_MODEL", kEmbedModel},
      {"YUNZHI_RERANK_MODEL", kRerankModel},
      {"YUNZHI_DOCS_DIR", YUNZHI_TESTDATA_DIR "/docs"},
      // The client must not reach for a proxy on loopback.
      {"NO_PROXY", "127.0.0.1,localhost"},
  };
  const CommandResult r =
      RunCommand({node_, "--test", "--test-concurrency=1", kNodeDir + "/" + GetParam()}, env, 600s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\nserver stderr:\n" << server_->err();
}

INSTANTIATE_TEST_SUITE_P(Files, OpenAiSdk, ::testing::ValuesIn(NodeTestFiles()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           // "chat.test.mjs" -> "chat"
                           std::string name = info.param.substr(0, info.param.find('.'));
                           std::replace_if(
                               name.begin(), name.end(),
                               [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); },
                               '_');
                           return name;
                         });

// No files means a broken checkout, not a pass.
TEST(OpenAiSdkFiles, Exist) { EXPECT_FALSE(NodeTestFiles().empty()) << kNodeDir; }

}  // namespace
}  // namespace yunzhi::testing
