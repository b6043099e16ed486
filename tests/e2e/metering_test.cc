// Metering and billing against the real `yunzhi serve`: concurrent streaming requests (some
// cancelled mid-stream) produce usage records whose sums equal what the responses reported; a
// process killed between the usage journal and the database write has exactly one record after
// restart; an exhausted balance answers 429 insufficient_quota; statements reconcile.
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/money.h"
#include "yunzhi/store/database.h"

namespace yunzhi::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kBinary = YUNZHI_BINARY;
const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

class MeteringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto imported = RunCommand({kBinary, "import", kStories, "--name", "test/stories", "--data-dir",
                                dir_.path() + "/data"});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
  }

  void Start(std::map<std::string, std::string> env = {}, const std::string& log_level = "warn") {
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{kBinary, "serve", "--data-dir", dir_.path() + "/data", "--port",
                                 "0", "--log-level", log_level},
        env);
    ASSERT_TRUE(server_->WaitForOutput(
        [](const std::string& out) { return out.find("serving on") != std::string::npos; }));
    std::smatch m;
    const std::string out = server_->out();
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))")));
    port_ = static_cast<uint16_t>(std::stoi(m[1]));
    if (std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))"))) admin_ = m[1];
  }

  HeaderList Auth(const std::string& key) const {
    return {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}};
  }

  json::value Call(const std::string& method, const std::string& target, const std::string& key,
                   const json::value& body = nullptr, int expect = 200) const {
    HttpClient client(port_, 60s);
    auto r = client.Send(method, target, Auth(key), body.is_null() ? "" : json::serialize(body));
    EXPECT_TRUE(r.has_value()) << target;
    if (!r) return nullptr;
    EXPECT_EQ(r->status, expect) << method << " " << target << ": " << r->body;
    return r->body.empty() || r->body[0] != '{' ? json::value(r->body) : json::parse(r->body);
  }

  // Creates a tenant and an inference key in it; returns {tenant id, key secret, key id}.
  std::array<std::string, 3> NewTenantKey(const std::string& name) const {
    auto t = Call("POST", "/api/tenants", admin_, json::object{{"name", name}}, 201);
    const std::string tenant(t.at("id").as_string());
    auto k = Call("POST", "/api/keys", admin_,
                  json::object{{"name", "k"}, {"scopes", json::array{"inference"}}, {"tenant", tenant}}, 201);
    return {tenant, std::string(k.at("key").as_string()), std::string(k.at("id").as_string())};
  }

  static json::object ChatBody(int max_tokens, bool stream) {
    json::object o{{"model", "test/stories"},
                   {"messages", json::array{json::object{{"role", "user"}, {"content", "Once upon a time"}}}},
                   {"max_tokens", max_tokens},
                   {"temperature", 0},
                   {"ignore_eos", true},
                   {"stream", stream}};
    if (stream) o["stream_options"] = json::object{{"include_usage", true}};
    return o;
  }

  // The usage records in the data dir's database, read as the CLI does.
  std::vector<platform::UsageRecord> Records() const {
    store::DatabaseOptions o;
    o.url = dir_.path() + "/data/yunzhi.db";
    auto db = store::Database::Open(o);
    if (!db) return {};
    auto r = platform::Meter::ListFrom(**db, "", 0, INT64_MAX);
    return r.value_or(std::vector<platform::UsageRecord>{});
  }

  template <typename Pred>
  static bool Eventually(Pred pred, std::chrono::milliseconds timeout = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  uint16_t port_ = 0;
  std::string admin_;
};

// This month in UTC, "YYYY-MM".
std::string FormatMonth() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m", &tm);
  return buf;
}

struct Reported {
  std::string id;
  int64_t prompt = 0, completion = 0;
  int64_t chunks = 0;  // cancelled streams: content chunks received before leaving
  bool cancelled = false;
};

TEST_F(MeteringTest, ConcurrentStreamsAndCancellationsAreMeteredExactly) {
  Start();
  ASSERT_FALSE(admin_.empty());
  const auto [tenant, key, key_id] = NewTenantKey("acme");
  constexpr int kStreams = 8, kCancelled = 4, kPlain = 4;
  std::vector<Reported> reported(kStreams + kCancelled + kPlain);
  std::vector<std::thread> threads;
  for (int i = 0; i < static_cast<int>(reported.size()); ++i) {
    threads.emplace_back([&, i, key = key] {
      Reported& rep = reported[static_cast<size_t>(i)];
      HttpClient client(port_, 60s);
      if (i >= kStreams + kCancelled) {
        auto r = client.Send("POST", "/v1/chat/completions", Auth(key),
                             json::serialize(ChatBody(16 + i, false)));
        ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().ToString());
        auto v = json::parse(r->body);
        rep.id = std::string(v.at("id").as_string());
        rep.prompt = v.at("usage").at("prompt_tokens").as_int64();
        rep.completion = v.at("usage").at("completion_tokens").as_int64();
        return;
      }
      rep.cancelled = i >= kStreams;
      const std::string body = json::serialize(ChatBody(rep.cancelled ? 4000 : 24 + i, true));
      ASSERT_TRUE(client.Connect());
      ASSERT_TRUE(client.SendRaw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                 key + "\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\n\r\n" + body));
      auto head = client.ReadResponseHead();
      ASSERT_TRUE(head && head->status == 200);
      while (true) {
        auto ev = client.ReadSseEvent();
        ASSERT_TRUE(ev && ev->has_value());
        if (**ev == "[DONE]") break;
        auto v = json::parse(**ev).as_object();
        rep.id = std::string(v.at("id").as_string());
        if (v.contains("usage") && v.at("usage").is_object()) {
          rep.prompt = v.at("usage").at("prompt_tokens").as_int64();
          rep.completion = v.at("usage").at("completion_tokens").as_int64();
        }
        if (!v.at("choices").as_array().empty()) ++rep.chunks;
        if (rep.cancelled && rep.chunks == 5) {
          client.Close();  // leave mid-stream
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // Records are written right after each response ends: wait until all are there.
  std::map<std::string, platform::UsageRecord> by_id;
  ASSERT_TRUE(Eventually([&] {
    by_id.clear();
    for (auto& r : Records()) {
      if (r.kind == platform::kUsageChatTokens) by_id[r.request_id] = r;
    }
    return by_id.size() == reported.size();
  })) << by_id.size();
  int64_t reported_prompt = 0, reported_completion = 0;
  for (const auto& rep : reported) {
    ASSERT_TRUE(by_id.count(rep.id)) << rep.id;
    const auto& rec = by_id[rep.id];
    EXPECT_EQ(rec.tenant_id, tenant);
    EXPECT_EQ(rec.key_id, key_id);
    EXPECT_EQ(rec.model, "test/stories");
    if (rep.cancelled) {
      // Billed for what was produced: at least what the client saw, far less than max_tokens.
      EXPECT_GE(rec.q.completion_tokens, rep.chunks - 1) << rep.id;
      EXPECT_LT(rec.q.completion_tokens, 4000) << rep.id;
      EXPECT_GT(rec.q.prompt_tokens, 0);
    } else {
      EXPECT_EQ(rec.q.prompt_tokens, rep.prompt) << rep.id;
      EXPECT_EQ(rec.q.completion_tokens, rep.completion) << rep.id;
      reported_prompt += rep.prompt;
      reported_completion += rep.completion;
    }
  }
  // The usage API adds up to the same numbers (grouped by key: one key did everything).
  auto usage = Call("GET", "/api/usage?group_by=key", key);
  // Rows are per (key, kind): the chat tokens, and the model load of the first request.
  const auto& data = usage.at("data").as_array();
  ASSERT_EQ(data.size(), 2u) << usage;
  const json::value& chat = data[0].at("kind") == "chat_tokens" ? data[0] : data[1];
  const json::value& load = data[0].at("kind") == "chat_tokens" ? data[1] : data[0];
  EXPECT_EQ(chat.at("key").as_string(), key_id);
  EXPECT_EQ(chat.at("records").as_int64(), static_cast<int64_t>(reported.size()));
  EXPECT_EQ(load.at("kind").as_string(), "model_load");
  EXPECT_EQ(load.at("records").as_int64(), 1);
  EXPECT_GT(load.at("compute_ms").as_int64() + 1, 0);
  int64_t recorded_completion = 0, recorded_prompt = 0;
  for (const auto& [id, r] : by_id) {
    recorded_completion += r.q.completion_tokens;
    recorded_prompt += r.q.prompt_tokens;
  }
  EXPECT_EQ(chat.at("completion_tokens").as_int64(), recorded_completion);
  EXPECT_EQ(chat.at("prompt_tokens").as_int64(), recorded_prompt);
  // CSV of the same, and the platform admin's view of every tenant.
  auto csv = Call("GET", "/api/usage?group_by=model&format=csv", key);
  EXPECT_NE(std::string(csv.as_string()).find("test/stories,chat_tokens," + std::to_string(reported.size())),
            std::string::npos)
      << csv;
  auto all = Call("GET", "/api/usage?tenant=all&group_by=day", admin_);
  EXPECT_FALSE(all.at("data").as_array().empty());
  Call("GET", "/api/usage?tenant=all", key, nullptr, 403);
  Call("GET", "/api/usage?group_by=week", key, nullptr, 400);
  // The model load of the first request is metered once, for the tenant whose request loaded it.
  int loads = 0;
  for (const auto& r : Records()) loads += r.kind == platform::kUsageModelLoad ? 1 : 0;
  EXPECT_EQ(loads, 1);
  (void)reported_prompt;
  (void)reported_completion;
}

// Reserved throughput under load: with one generation slot, sixteen tenants' best-effort
// requests queue up, and the scheduler takes tenants round robin. A request of a tenant holding
// a throughput reservation for the model, sent after the flood, is admitted ahead of everything
// still waiting -- without the reservation it would wait for its turn in the rotation (on
// average eight requests; this test then fails four times out of five).
TEST_F(MeteringTest, ReservedThroughputIsServedAheadOfBestEffortUnderLoad) {
  Start({{"YUNZHI_SERVING_MAX_RUNNING", "1"}, {"YUNZHI_SERVING_THREADS", "1"}}, "info");
  ASSERT_FALSE(admin_.empty());
  constexpr int kTenants = 16, kEach = 2, kFlood = kTenants * kEach;
  std::vector<std::string> flood_keys;
  for (int i = 0; i < kTenants; ++i) flood_keys.push_back(NewTenantKey(fmt::format("flood{}", i))[1]);
  const auto reserved = NewTenantKey("reserved");
  Call("POST", "/api/billing/plans", admin_,
       json::object{{"tenant", reserved[0]}, {"kind", "throughput_reserved"}, {"model", "test/stories"},
                    {"capacity", 1'000'000}, {"start", "2020-01-01"}, {"term_months", 120}},
       201);
  // The model loads; the reserved tenant's account, plans and key are read once beforehand, as
  // they would be for any tenant already using the platform.
  Call("POST", "/v1/chat/completions", flood_keys[0], ChatBody(4, false));
  Call("POST", "/v1/chat/completions", reserved[1], ChatBody(4, false));
  std::mutex mu;
  std::vector<std::string> finished;  // in completion order
  auto send = [&](const std::string& key, const std::string& who) {
    HttpClient client(port_, 120s);
    auto r = client.Send("POST", "/v1/chat/completions", Auth(key), json::serialize(ChatBody(400, false)));
    EXPECT_TRUE(r.has_value() && r->status == 200) << who << ": " << (r ? r->body : "no response");
    std::lock_guard lock(mu);
    finished.push_back(who);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kFlood; ++i) threads.emplace_back(send, flood_keys[i % kTenants], "flood");
  // Every flood request reaches the server (one running, the rest waiting) before the reserved
  // one; most of them are still waiting when it arrives.
  std::this_thread::sleep_for(300ms);
  size_t done_before = 0;
  {
    std::lock_guard lock(mu);
    done_before = finished.size();
  }
  ASSERT_LE(done_before + kTenants, static_cast<size_t>(kFlood)) << "the flood finished too fast to queue";
  threads.emplace_back(send, reserved[1], "reserved");
  for (auto& t : threads) t.join();
  ASSERT_EQ(finished.size(), static_cast<size_t>(kFlood + 1));
  const size_t position = static_cast<size_t>(
      std::find(finished.begin(), finished.end(), "reserved") - finished.begin());
  // The scheduler's own clock (request logs): time to first token counts from the request's
  // arrival at the scheduler, so client and HTTP delays on a busy machine do not enter.
  server_->Signal(SIGTERM);
  ASSERT_TRUE(server_->Wait(30s).has_value());
  std::vector<double> flood_generation_ms;
  std::optional<double> reserved_ttft_ms;
  const std::regex line(R"(generation_done .*tenant_id=(\S+) .*completion_tokens=400 .*ttft_ms=([0-9.]+) total_ms=([0-9.]+))");
  const std::string& err = server_->err();
  for (auto it = std::sregex_iterator(err.begin(), err.end(), line); it != std::sregex_iterator(); ++it) {
    const double ttft = std::stod((*it)[2]), total = std::stod((*it)[3]);
    if ((*it)[1] == reserved[0]) {
      reserved_ttft_ms = ttft;
    } else {
      flood_generation_ms.push_back(total - ttft);
    }
  }
  ASSERT_TRUE(reserved_ttft_ms.has_value()) << err.substr(0, 2000);
  ASSERT_EQ(flood_generation_ms.size(), static_cast<size_t>(kFlood));
  std::nth_element(flood_generation_ms.begin(), flood_generation_ms.begin() + kFlood / 2, flood_generation_ms.end());
  const double one_request_ms = flood_generation_ms[kFlood / 2];
  // Admitted next, it waits for at most the one request running when it arrived (~1 x); in
  // its turn of the rotation it would wait for ~8 requests.
  EXPECT_LT(*reserved_ttft_ms, 3 * one_request_ms)
      << "reserved request: first token after " << *reserved_ttft_ms << " ms; one request takes "
      << one_request_ms << " ms; it finished at position " << position << " (" << done_before
      << " had finished when it was sent)";
}

TEST_F(MeteringTest, KillBetweenJournalAndDatabaseLeavesExactlyOneRecord) {
  Start({{"YUNZHI_FAULT", "usage_after_journal"}});
  ASSERT_FALSE(admin_.empty());
  HttpClient client(port_, 60s);
  // The first usage record written (the request's model load, or its tokens) ends the process
  // with 137 right after its journal line is synced: the response may or may not get out.
  auto r = client.Send("POST", "/v1/chat/completions", Auth(admin_), json::serialize(ChatBody(8, false)));
  std::string id;
  if (r && r->status == 200) id = std::string(json::parse(r->body).at("id").as_string());
  auto code = server_->Wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 137);
  // What the dead process journaled: every line whole (a line is written before anything else
  // happens for it), none of it in the database yet.
  std::set<std::pair<std::string, std::string>> journaled;
  {
    std::ifstream in(dir_.path() + "/data/usage.journal");
    std::string line;
    while (std::getline(in, line)) {
      auto rec = platform::Meter::FromJsonLine(line);
      ASSERT_TRUE(rec.has_value()) << line;
      // The storage samples of the server's start are not the request's (and a batch of them
      // alone does not trigger the fault).
      if (rec->kind != platform::kUsageStorageSample) journaled.insert({rec->request_id, rec->kind});
    }
  }
  ASSERT_FALSE(journaled.empty());
  // Restart without the fault: the journal is replayed.
  Start();
  // The records of the request (the server also samples storage at start: not counted here).
  auto request_records = [&] {
    std::set<std::pair<std::string, std::string>> out;
    for (auto& r : Records()) {
      if (r.kind != platform::kUsageStorageSample) out.insert({r.request_id, r.kind});
    }
    return out;
  };
  std::set<std::pair<std::string, std::string>> recs;
  ASSERT_TRUE(Eventually([&] {
    recs = request_records();
    return !recs.empty();
  }));
  // Exactly the journaled records (the model load and, when it was journaled before the crash,
  // the tokens): the process died before they reached the database.
  EXPECT_EQ(recs, journaled);
  for (const auto& [rid, kind] : recs) EXPECT_TRUE(rid.rfind("chatcmpl-", 0) == 0) << rid;
  if (!id.empty()) {
    // The client got its answer: its tokens were journaled before the answer left.
    EXPECT_TRUE(recs.count({id, std::string(platform::kUsageChatTokens)})) << id;
  }
  // A second restart replays nothing more.
  server_.reset();
  Start();
  EXPECT_EQ(request_records(), journaled);
}

TEST_F(MeteringTest, ExhaustedBalanceAnswersInsufficientQuotaAndStatementsReconcile) {
  Start();
  ASSERT_FALSE(admin_.empty());
  const auto [tenant, key, key_id] = NewTenantKey("prepaid");
  Call("PUT", "/api/billing/prices", admin_,
       json::object{{"pattern", "test/*"}, {"input_per_1m", "1000"}, {"output_per_1m", "2000"}});
  // 0.01 cannot cover 16 output tokens at 0.002 each.
  Call("POST", "/api/billing/topup", admin_, json::object{{"tenant", tenant}, {"amount", "0.01"}});
  auto refused = Call("POST", "/v1/chat/completions", key, ChatBody(16, false), 429);
  EXPECT_EQ(refused.at("error").at("code").as_string(), "insufficient_quota");
  EXPECT_NE(std::string(refused.at("error").at("message").as_string()).find("tenant's prepaid balance"),
            std::string::npos);
  Call("POST", "/api/billing/topup", admin_, json::object{{"tenant", tenant}, {"amount", "1"}});
  auto ok = Call("POST", "/v1/chat/completions", key, ChatBody(16, false));
  const int64_t prompt = ok.at("usage").at("prompt_tokens").as_int64();
  const int64_t completion = ok.at("usage").at("completion_tokens").as_int64();
  // Settled at the real cost; nothing stays reserved.
  json::value account;
  ASSERT_TRUE(Eventually([&] {
    account = Call("GET", "/api/billing/account", key);
    return account.at("reserved").as_string() == "0.00" && account.at("used").as_string() != "0.00";
  })) << account;
  // cost = prompt × 0.001 + completion × 0.002, exactly.
  const int64_t nanos = prompt * 1'000'000 + completion * 2'000'000;
  EXPECT_EQ(std::string(account.at("used").as_string()), platform::Money::FromNanos(nanos).ToString());
  // A key spend limit binds before the tenant's balance.
  Call("POST", "/api/billing/limits", admin_, json::object{{"tenant", tenant}, {"key", key_id}, {"limit", "0"}});
  auto key_refused = Call("POST", "/v1/chat/completions", key, ChatBody(4, false), 429);
  EXPECT_NE(std::string(key_refused.at("error").at("message").as_string()).find("API key's"), std::string::npos);
  // The statement of this month reconciles with the usage records.
  const std::string month = FormatMonth();
  auto st = Call("GET", "/api/billing/statements/" + month + "?tenant=" + tenant, admin_);
  // Two records: the model load (the refused first request loaded the model) and the chat.
  EXPECT_EQ(st.at("usage").at("records").as_int64(), 2);
  EXPECT_EQ(st.at("usage").at("prompt_tokens").as_int64(), prompt);
  EXPECT_EQ(st.at("usage").at("completion_tokens").as_int64(), completion);
  auto csv = Call("GET", "/api/billing/statements/" + month + "?format=csv", key, nullptr, 403);
  (void)csv;
}

}  // namespace
}  // namespace yunzhi::testing
