// Serving faults against the real `yunzhi serve`: a client leaving mid-stream frees its KV
// blocks (the metrics show it), a full queue answers 429 + Retry-After, a model file deleted
// while unloaded gives a clear error (and the server goes on), and 200 concurrent streaming
// clients all finish without errors or leaked resources.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"

namespace yunzhi::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kBinary = YUNZHI_BINARY;
const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

class ServingTest : public ::testing::Test {
 protected:
  // Imports stories260K (a copy, so that a test may delete it) and starts the server.
  void Start(std::map<std::string, std::string> env = {}) {
    const std::string model = dir_.path() + "/stories.gguf";
    std::filesystem::copy_file(kStories, model);
    auto imported = RunCommand({kBinary, "import", model, "--name", "test/stories", "--data-dir",
                                dir_.path() + "/data"});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
    std::vector<std::string> argv = {kBinary,        "serve",     "--data-dir",
                                     dir_.path() + "/data", "--port", "0",
                                     "--log-level",  "warn"};
    server_ = std::make_unique<ChildProcess>(argv, env);
    ASSERT_TRUE(server_->WaitForOutput(
        [](const std::string& out) { return out.find("serving on") != std::string::npos; }));
    std::smatch m;
    const std::string out = server_->out();
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))")));
    port_ = static_cast<uint16_t>(std::stoi(m[1]));
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))")));
    key_ = m[1];
  }

  HeaderList Headers() const {
    return {{"Authorization", "Bearer " + key_}, {"Content-Type", "application/json"}};
  }

  std::string Completion(int max_tokens, bool stream, const std::string& prompt = "Once upon a time") const {
    return json::serialize(json::object{{"model", "test/stories"},
                                        {"prompt", prompt},
                                        {"max_tokens", max_tokens},
                                        {"temperature", 0},
                                        {"ignore_eos", true},
                                        {"stream", stream}});
  }

  // Sends a streaming request on `client` and reads the response head.
  Result<ClientResponse> StartStream(HttpClient& client, int max_tokens) const {
    std::string body = Completion(max_tokens, true);
    std::string raw = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key_ +
                      "\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body;
    YZ_RETURN_IF_ERROR(client.Connect());
    YZ_RETURN_IF_ERROR(client.SendRaw(raw));
    return client.ReadResponseHead();
  }

  // A value of /metrics: the sample line starting with `series` (name and labels).
  double Metric(const std::string& series) const {
    HttpClient client(port_);
    auto r = client.Send("GET", "/metrics");
    if (!r) return -1;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }

  json::object Ps() const {
    HttpClient client(port_);
    auto r = client.Send("GET", "/api/ps", Headers());
    if (!r || r->status != 200) return {};
    return json::parse(r->body).as_object();
  }

  template <typename Pred>
  static bool Eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  int OpenFds() const {
    int n = 0;
    DIR* d = opendir(("/proc/" + std::to_string(server_->pid()) + "/fd").c_str());
    if (d == nullptr) return -1;
    while (readdir(d) != nullptr) ++n;
    closedir(d);
    return n;
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  uint16_t port_ = 0;
  std::string key_;
};

const char kUsedBlocks[] = R"(yunzhi_kv_blocks{model="test/stories",state="used"})";

TEST_F(ServingTest, ClientLeavingMidStreamFreesItsKvBlocks) {
  Start({{"YUNZHI_SERVING_CONTEXT_TOKENS", "8192"}});
  {
    HttpClient client(port_);
    auto head = StartStream(client, 8000);  // long enough to still run when we leave
    ASSERT_TRUE(head) << head.error().ToString();
    ASSERT_EQ(head->status, 200);
    for (int i = 0; i < 3; ++i) {
      auto event = client.ReadSseEvent();
      ASSERT_TRUE(event && event->has_value());
    }
    // While it streams, the sequence holds blocks.
    EXPECT_GT(Metric(kUsedBlocks), 0);
    client.Close();
  }
  // Within a step or two the scheduler notices, and the blocks go back.
  EXPECT_TRUE(Eventually([&] { return Metric(kUsedBlocks) == 0; })) << Metric(kUsedBlocks);
  EXPECT_TRUE(Eventually([&] {
    auto ps = Ps();
    if (!ps.contains("data") || ps["data"].as_array().empty()) return false;
    auto& m = ps["data"].as_array()[0].as_object();
    return m["running"].as_int64() == 0 && m["active_requests"].as_int64() == 0;
  })) << json::serialize(Ps());
  EXPECT_GE(Metric(R"(yunzhi_generation_requests_total{model="test/stories",finish="cancelled"})"), 1);
}

TEST_F(ServingTest, FullQueueIsRefusedWith429AndRetryAfter) {
  // A long context so that a request generates for a while (thousands of tokens).
  Start({{"YUNZHI_SERVING_MAX_RUNNING", "1"},
         {"YUNZHI_SERVING_MAX_WAITING", "1"},
         {"YUNZHI_SERVING_CONTEXT_TOKENS", "8192"}});
  {
    HttpClient warm(port_);  // load the model first: loading must not be what we measure
    auto r = warm.Send("POST", "/v1/completions", Headers(), Completion(1, false));
    ASSERT_TRUE(r && r->status == 200);
  }
  // All five are sent before any answer is read: one runs, one waits, three are refused.
  std::vector<std::unique_ptr<HttpClient>> clients;
  const std::string body = Completion(8000, true);
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<HttpClient>(port_, 30s));
    ASSERT_TRUE(clients.back()->Connect());
    ASSERT_TRUE(clients.back()->SendRaw(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key_ +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body));
  }
  int ok = 0, refused = 0;
  for (auto& client : clients) {
    auto head = client->ReadResponseHead();
    ASSERT_TRUE(head) << head.error().ToString();
    if (head->status == 200) {
      ++ok;
      continue;
    }
    EXPECT_EQ(head->status, 429);
    EXPECT_EQ(head->Header("Retry-After"), "1");
    ++refused;
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(refused, 3);
  clients.clear();  // the two streams are cancelled
  EXPECT_TRUE(Eventually([&] { return Metric(kUsedBlocks) == 0; })) << Metric(kUsedBlocks);
}

TEST_F(ServingTest, DeletedModelFileGivesAClearErrorAndTheServerGoesOn) {
  Start();
  // Where the registry keeps the file (a hard link of our copy): remove both.
  auto show = RunCommand({kBinary, "show", "test/stories", "--json", "--data-dir", dir_.path() + "/data"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  auto info = json::parse(show.out).as_object();
  ASSERT_TRUE(info.contains("path")) << show.out;
  std::filesystem::remove(std::string(info["path"].as_string()));
  std::filesystem::remove(dir_.path() + "/stories.gguf");

  HttpClient client(port_);
  auto r = client.Send("POST", "/v1/completions", Headers(), Completion(4, false));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->status, 503) << r->body;
  auto error = json::parse(r->body).as_object()["error"].as_object();
  EXPECT_EQ(error["code"], "model_load_failed");
  EXPECT_NE(std::string(error["message"].as_string()).find("no such file"), std::string::npos)
      << r->body;
  // The server is fine: health and a model that does not exist still answer properly.
  auto health = client.Send("GET", "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto unknown = client.Send("POST", "/v1/completions", Headers(),
                             R"({"model":"test/nope","prompt":"x","max_tokens":1})");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("model_not_found"), std::string::npos);
}

TEST_F(ServingTest, ShutdownEndsAStreamStillRunningAfterTheGraceCleanly) {
  Start({{"YUNZHI_SERVING_CONTEXT_TOKENS", "65536"},
         {"YUNZHI_SERVER_SHUTDOWN_GRACE_MS", "200"}});
  HttpClient client(port_, 20s);
  auto head = StartStream(client, 65000);  // seconds of generation
  ASSERT_TRUE(head) << head.error().ToString();
  ASSERT_EQ(head->status, 200);
  ASSERT_TRUE(client.ReadSseEvent());
  server_->Signal(SIGTERM);
  // The stream goes on during the grace period, then ends with an error event and [DONE], and
  // the chunked body is properly terminated.
  std::string last_data;
  bool saw_error = false, saw_done = false;
  while (true) {
    auto event = client.ReadSseEvent();
    ASSERT_TRUE(event) << event.error().ToString();
    if (!event->has_value()) break;
    if (**event == "[DONE]") saw_done = true;
    if ((*event)->find("\"error\"") != std::string::npos) {
      saw_error = true;
      last_data = **event;
    }
  }
  EXPECT_TRUE(saw_error);
  EXPECT_TRUE(saw_done);
  EXPECT_NE(last_data.find("unloaded"), std::string::npos) << last_data;
  EXPECT_EQ(server_->Wait(10s), 0);
}

TEST_F(ServingTest, PsListsLoadedModelsOfTheServerOnTheDataDir) {
  Start();
  const std::string data = dir_.path() + "/data";
  auto empty = RunCommand({kBinary, "ps", "--data-dir", data}, {{"YUNZHI_API_KEY", key_}});
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(empty.out.find("test/stories"), std::string::npos);
  HttpClient client(port_);
  auto r = client.Send("POST", "/v1/completions", Headers(), Completion(2, false));
  ASSERT_TRUE(r && r->status == 200);
  auto ps = RunCommand({kBinary, "ps", "--data-dir", data}, {{"YUNZHI_API_KEY", key_}});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_NE(ps.out.find("test/stories"), std::string::npos) << ps.out;
  auto no_key = RunCommand({kBinary, "ps", "--data-dir", data}, {{"YUNZHI_API_KEY", ""}});
  EXPECT_NE(no_key.exit_code, 0);
  EXPECT_NE(no_key.err.find("API key"), std::string::npos) << no_key.err;
  auto bad_key = RunCommand({kBinary, "ps", "--data-dir", data, "--api-key", "yz-wrong"});
  EXPECT_NE(bad_key.exit_code, 0);
  EXPECT_NE(bad_key.err.find("401"), std::string::npos) << bad_key.err;
}

TEST_F(ServingTest, TwoHundredConcurrentStreamsAllFinishWithoutLeaks) {
  Start();
  // 200 clients stream at once; every one must get its tokens and [DONE].
  auto burst = [&] {
    constexpr int kClients = 200;
    std::atomic<int> done{0};
    std::vector<std::string> errors(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&, i] {
        HttpClient client(port_, 60s);
        auto head = StartStream(client, 12);
        if (!head || head->status != 200) {
          errors[i] = head ? std::to_string(head->status) : head.error().ToString();
          return;
        }
        int events = 0;
        while (true) {
          auto event = client.ReadSseEvent();
          if (!event || !event->has_value()) {
            errors[i] = event ? "stream ended without [DONE]" : event.error().ToString();
            return;
          }
          if (**event == "[DONE]") break;
          ++events;
        }
        if (events < 2) {
          errors[i] = "no tokens";
          return;
        }
        ++done;
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kClients; ++i) {
      EXPECT_TRUE(errors[i].empty()) << "client " << i << ": " << errors[i];
    }
    EXPECT_EQ(done, kClients);
    // Nothing left behind: no sequence holds blocks, no request is in flight.
    EXPECT_TRUE(Eventually([&] { return Metric(kUsedBlocks) == 0; })) << Metric(kUsedBlocks);
    EXPECT_TRUE(Eventually([&] { return Metric("yunzhi_http_requests_in_flight") <= 1; }))
        << Metric("yunzhi_http_requests_in_flight");
  };
  // The first burst grows pools to their working size (the store's SQLite connections, up to
  // its bounded maximum, 2-3 descriptors each); later bursts of 200 connections must not leave
  // descriptors behind: a per-connection or per-request leak would show as hundreds.
  burst();
  std::this_thread::sleep_for(200ms);
  const int fds_after_first = OpenFds();
  for (int round = 0; round < 2; ++round) {
    burst();
    EXPECT_TRUE(Eventually([&] { return OpenFds() <= fds_after_first + 16; }))
        << OpenFds() << " fds, " << fds_after_first << " after the first burst";
  }
}

}  // namespace
}  // namespace yunzhi::testing
