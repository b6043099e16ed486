// The model commands of the real `yunzhi` binary (import, list, show, rm), alone on a data dir and
// beside a running `yunzhi serve` that sees their effect through /v1/models, and an import
// started over the API.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <regex>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "model_writer.h"
#include "support/http_client.h"
#include "support/process.h"

namespace yunzhi::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::string kBinary = YUNZHI_BINARY;
const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

class ModelsCliTest : public ::testing::Test {
 protected:
  std::string data_dir() const { return dir_.path() + "/data"; }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--data-dir");
    argv.push_back(data_dir());
    return RunCommand(argv, {}, 60s);
  }

  std::string WriteTinyHf(const std::string& name) {
    tools::ModelSpec s;
    s.architecture = engine::Architecture::kQwen2;
    s.weight_type = engine::TensorType::kF16;
    s.n_vocab = 300;
    s.n_embd = 64;
    s.n_ff = 128;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_layer = 2;
    s.n_ctx = 1024;
    const std::string path = dir_.path() + "/" + name;
    auto st = tools::WriteModel(s, {.hf_dir = path});
    EXPECT_TRUE(st) << st.error().ToString();
    return path;
  }

  TempDir dir_;
};

json::object Parse(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return ec || !v.is_object() ? json::object() : v.as_object();
}

TEST_F(ModelsCliTest, ImportListShowRemove) {
  const std::string gguf = dir_.path() + "/stories260K.gguf";
  fs::copy_file(kStories, gguf);
  auto imported = Cli({"import", gguf});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("imported stories260k (mdl_"));
  EXPECT_THAT(imported.out, HasSubstr("llama"));
  EXPECT_THAT(imported.err, HasSubstr("100.0%"));
  EXPECT_THAT(imported.err, HasSubstr("MB/s"));

  const std::string hf = WriteTinyHf("Tiny-Qwen");
  auto imported_hf = Cli({"import", hf, "--name", "acme/tiny-qwen:f16"});
  ASSERT_EQ(imported_hf.exit_code, 0) << imported_hf.err;

  auto again = Cli({"import", gguf});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already exists"));
  auto replaced = Cli({"import", gguf, "--replace"});
  EXPECT_EQ(replaced.exit_code, 0) << replaced.err;
  auto bad_name = Cli({"import", gguf, "--name", "Bad/Name"});
  EXPECT_EQ(bad_name.exit_code, 2);
  EXPECT_THAT(bad_name.err, HasSubstr("invalid model name"));

  auto list = Cli({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, ::testing::StartsWith("NAME"));
  for (const char* col : {"ID", "ARCH", "PARAMS", "TYPE", "CTX", "SIZE", "CREATED"}) {
    EXPECT_THAT(list.out, HasSubstr(col));
  }
  EXPECT_TRUE(std::regex_search(
      list.out, std::regex(R"(acme/tiny-qwen:f16 +mdl_\w+ +qwen2 +\S+K +F16 +1024)")))
      << list.out;
  EXPECT_TRUE(
      std::regex_search(list.out, std::regex(R"(stories260k +mdl_\w+ +llama +2\d\dK +F32)")))
      << list.out;

  auto show = Cli({"show", "acme/tiny-qwen:f16", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  auto o = Parse(show.out);
  EXPECT_EQ(o["format"].as_string(), "safetensors");
  EXPECT_EQ(o["architecture"].as_string(), "qwen2");
  EXPECT_EQ(o["context_tokens"].as_int64(), 1024);
  const std::string model_dir(o["path"].as_string());
  EXPECT_TRUE(fs::exists(model_dir + "/config.json"));
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((model_dir + "/model.safetensors").c_str(), &a), 0);
  ASSERT_EQ(::stat((hf + "/model.safetensors").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "hard link, not a copy";
  auto show_text = Cli({"show", "stories260k"});
  EXPECT_EQ(show_text.exit_code, 0);
  EXPECT_THAT(show_text.out, HasSubstr("architecture   llama"));

  auto rm = Cli({"rm", "acme/tiny-qwen:f16"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_FALSE(fs::exists(model_dir));
  auto gone = Cli({"show", "acme/tiny-qwen:f16"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("model 'acme/tiny-qwen:f16' does not exist"));
  auto rm_again = Cli({"rm", "acme/tiny-qwen:f16"});
  EXPECT_EQ(rm_again.exit_code, 1);
}

TEST_F(ModelsCliTest, CommandsWorkBesideARunningServerAndTheApiImports) {
  ChildProcess server(
      {kBinary, "serve", "--data-dir", data_dir(), "--port", "0", "--log-level", "warn"});
  ASSERT_TRUE(server.WaitForOutput([](const std::string& out) {
    return out.find("serving on") != std::string::npos;
  })) << server.err();
  std::smatch m;
  const std::string out = server.out();
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))")));
  const auto port = static_cast<uint16_t>(std::stoi(m[1]));
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))")));
  const std::string admin = m[1];
  const HeaderList auth = {{"Authorization", "Bearer " + admin}};

  // The CLI imports while the server holds the data dir; the server sees it at once.
  const std::string gguf = dir_.path() + "/stories260K.gguf";
  fs::copy_file(kStories, gguf);
  auto imported = Cli({"import", gguf, "--name", "karpathy/stories260k"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  {
    HttpClient c(port);
    auto r = c.Send("GET", "/v1/models/karpathy/stories260k", auth);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(Parse(r->body)["owned_by"].as_string(), "karpathy");
  }

  // An import over the API, polled to completion.
  const std::string hf = WriteTinyHf("hf");
  std::string job_id;
  {
    HttpClient c(port);
    HeaderList h = auth;
    h.emplace_back("Content-Type", "application/json");
    auto r = c.Send("POST", "/api/models", h,
                    json::serialize(json::object{{"path", hf}, {"name", "tiny"}}));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202) << r->body;
    job_id = std::string(Parse(r->body)["id"].as_string());
  }
  json::object job;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       std::chrono::steady_clock::now() < deadline;) {
    HttpClient c(port);
    auto r = c.Send("GET", "/api/models/imports/" + job_id, auth);
    ASSERT_TRUE(r);
    job = Parse(r->body);
    if (!job["finished_at"].is_null()) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(job["status"].as_string(), "succeeded") << json::serialize(job);

  auto list = Cli({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("tiny "));
  EXPECT_THAT(list.out, HasSubstr("karpathy/stories260k"));

  auto rm = Cli({"rm", "karpathy/stories260k"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  {
    HttpClient c(port);
    auto r = c.Send("GET", "/v1/models", auth);
    ASSERT_TRUE(r);
    auto data = Parse(r->body)["data"].as_array();
    ASSERT_EQ(data.size(), 1u) << r->body;
    EXPECT_EQ(data[0].at("id").as_string(), "tiny");
  }
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(30s), 0) << server.err();
}

}  // namespace
}  // namespace yunzhi::testing
