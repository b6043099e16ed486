// Whole-program tests: the real `yunzhi` binary, started as a child process on an ephemeral port,
// spoken to over HTTP, stopped with signals.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <regex>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"

namespace yunzhi::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kBinary = YUNZHI_BINARY;

// A running `yunzhi serve` on its own data dir.
class Server {
 public:
  explicit Server(std::string data_dir, std::vector<std::string> extra = {},
                  std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {kBinary, "serve", "--data-dir", data_dir, "--port", "0",
                                     "--log-level", "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ChildProcess>(argv, env);
    started_ = process_->WaitForOutput(
        [](const std::string& out) { return out.find("serving on") != std::string::npos; });
    std::smatch m;
    const std::string out = process_->out();
    if (std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))"))) {
      port_ = static_cast<uint16_t>(std::stoi(m[1]));
    }
    if (std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))"))) admin_key_ = m[1];
  }

  bool started() const { return started_ && port_ != 0; }
  uint16_t port() const { return port_; }
  const std::string& admin_key() const { return admin_key_; }
  ChildProcess& process() { return *process_; }

  // SIGTERM and wait: the exit code.
  std::optional<int> Stop() {
    process_->Signal(SIGTERM);
    return process_->Wait(30s);
  }

 private:
  std::unique_ptr<ChildProcess> process_;
  bool started_ = false;
  uint16_t port_ = 0;
  std::string admin_key_;
};

HeaderList Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }
HeaderList JsonBearer(const std::string& key) {
  return {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}};
}

json::object ParseObject(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  EXPECT_FALSE(ec) << body;
  if (ec || !v.is_object()) return {};
  return v.as_object();
}

// Asserts an OpenAI-style error body with the given type and (optional) code.
void ExpectOpenAiError(const ClientResponse& r, int status, std::string_view type,
                       std::string_view code = {}) {
  EXPECT_EQ(r.status, status) << r.body;
  auto o = ParseObject(r.body);
  ASSERT_TRUE(o.contains("error")) << r.body;
  const auto& e = o["error"].as_object();
  EXPECT_EQ(e.at("type").as_string(), type) << r.body;
  EXPECT_TRUE(e.at("message").is_string());
  EXPECT_FALSE(e.at("message").as_string().empty());
  if (!code.empty()) {
    ASSERT_TRUE(e.at("code").is_string()) << r.body;
    EXPECT_EQ(e.at("code").as_string(), code) << r.body;
  }
}

CommandResult Cli(const std::string& data_dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {kBinary};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--data-dir");
  argv.push_back(data_dir);
  return RunCommand(argv);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(dir_.path() + "/data");
    ASSERT_TRUE(server_->started()) << server_->process().err();
    ASSERT_FALSE(server_->admin_key().empty()) << server_->process().out();
  }
  void TearDown() override {
    if (server_) {
      auto code = server_->Stop();
      EXPECT_EQ(code, 0) << server_->process().err();
    }
  }
  std::string data_dir() const { return dir_.path() + "/data"; }
  Result<ClientResponse> Get(std::string_view target, const HeaderList& headers = {}) {
    HttpClient c(server_->port());
    return c.Send("GET", target, headers);
  }
  Result<ClientResponse> Post(std::string_view target, const std::string& key,
                              std::string_view body) {
    HttpClient c(server_->port());
    return c.Send("POST", target, JsonBearer(key), body);
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, HealthReadinessAndModelsList) {
  auto health = Get("/healthz");
  ASSERT_TRUE(health) << health.error().ToString();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(ParseObject(health->body)["status"].as_string(), "ok");
  EXPECT_TRUE(health->Header("X-Request-Id").has_value());

  auto ready = Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  auto models = Get("/v1/models", Bearer(server_->admin_key()));
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  auto o = ParseObject(models->body);
  EXPECT_EQ(o["object"].as_string(), "list");
  EXPECT_TRUE(o["data"].as_array().empty());
}

TEST_F(ServerTest, AuthErrorsHaveOpenAiShape) {
  auto none = Get("/v1/models");
  ASSERT_TRUE(none);
  ExpectOpenAiError(*none, 401, "authentication_error", "missing_api_key");

  auto bad = Get("/v1/models", Bearer("yz-" + std::string(40, 'x')));
  ASSERT_TRUE(bad);
  ExpectOpenAiError(*bad, 401, "authentication_error", "invalid_api_key");

  auto basic = Get("/v1/models", {{"Authorization", "Basic Zm9vOmJhcg=="}});
  ASSERT_TRUE(basic);
  ExpectOpenAiError(*basic, 401, "authentication_error");

  // Every /api route is behind the key too.
  auto tenants = Get("/api/tenants");
  ASSERT_TRUE(tenants);
  ExpectOpenAiError(*tenants, 401, "authentication_error", "missing_api_key");
}

TEST_F(ServerTest, ScopesAreEnforced) {
  auto created = Post("/api/keys", server_->admin_key(), R"({"name":"reader","scopes":["read"]})");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  auto key = ParseObject(created->body);
  const std::string reader(key["key"].as_string());
  EXPECT_EQ(key["prefix"].as_string(), reader.substr(0, 11));

  auto models = Get("/v1/models", Bearer(reader));
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  auto denied = Post("/api/keys", reader, R"({"name":"x"})");
  ASSERT_TRUE(denied);
  ExpectOpenAiError(*denied, 403, "permission_error", "insufficient_scope");
  auto tenants = Get("/api/tenants", Bearer(reader));
  ASSERT_TRUE(tenants);
  ExpectOpenAiError(*tenants, 403, "permission_error");
}

TEST_F(ServerTest, RevokedKeyIsRefusedAtOnceThroughTheApi) {
  auto created = Post("/api/keys", server_->admin_key(), R"({"scopes":["inference"]})");
  ASSERT_TRUE(created);
  auto key = ParseObject(created->body);
  const std::string secret(key["key"].as_string());
  ASSERT_EQ(Get("/v1/models", Bearer(secret))->status, 200);

  HttpClient c(server_->port());
  auto revoked = c.Send("DELETE", "/api/keys/" + std::string(key["id"].as_string()),
                        Bearer(server_->admin_key()));
  ASSERT_TRUE(revoked);
  EXPECT_EQ(revoked->status, 200) << revoked->body;
  EXPECT_FALSE(ParseObject(revoked->body)["revoked_at"].is_null());
  auto after = Get("/v1/models", Bearer(secret));
  ASSERT_TRUE(after);
  ExpectOpenAiError(*after, 401, "authentication_error", "invalid_api_key");
}

TEST_F(ServerTest, CliManagesKeysBesideRunningServer) {
  // Create a key from the CLI while the server holds the data dir.
  auto created = Cli(data_dir(), {"keys", "create", "--scopes", "read", "--name", "from-cli"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  std::string secret = created.out;
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  auto ok = Get("/v1/models", Bearer(secret));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);

  auto list = Cli(data_dir(), {"keys", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("from-cli"), std::string::npos);
  EXPECT_NE(list.out.find(secret.substr(0, 11)), std::string::npos);
  EXPECT_EQ(list.out.find(secret), std::string::npos) << "list must never show a secret";

  // Revoked by the CLI (another process): the server's key cache notices within its TTL (2 s).
  auto revoke = Cli(data_dir(), {"keys", "revoke", secret.substr(0, 11)});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = Get("/v1/models", Bearer(secret));
    ASSERT_TRUE(r);
    status = r->status;
    if (status == 401) break;
    std::this_thread::sleep_for(100ms);  // polling a condition with a deadline, not a blind wait
  }
  EXPECT_EQ(status, 401);
}

TEST_F(ServerTest, PerKeyRateLimitAnswers429WithRetryAfter) {
  auto created = Post("/api/keys", server_->admin_key(),
                      R"({"scopes":["read"],"requests_per_minute":2})");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  const std::string secret(ParseObject(created->body)["key"].as_string());
  HttpClient c(server_->port());
  for (int i = 0; i < 2; ++i) {
    auto r = c.Send("GET", "/v1/models", Bearer(secret));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->Header("x-ratelimit-limit-requests"), "2");
  }
  auto limited = c.Send("GET", "/v1/models", Bearer(secret));
  ASSERT_TRUE(limited);
  ExpectOpenAiError(*limited, 429, "rate_limit_error", "rate_limit_exceeded");
  auto retry = limited->Header("Retry-After");
  ASSERT_TRUE(retry);
  EXPECT_GE(std::stoi(*retry), 1);
  EXPECT_LE(std::stoi(*retry), 30);
  // Another key is not affected.
  auto other = c.Send("GET", "/v1/models", Bearer(server_->admin_key()));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
}

TEST_F(ServerTest, TenantLifecycleAndTenantAdminBoundaries) {
  const std::string admin = server_->admin_key();
  auto t = Post("/api/tenants", admin, R"({"name":"acme"})");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->status, 201) << t->body;
  const std::string tenant_id(ParseObject(t->body)["id"].as_string());
  auto dup = Post("/api/tenants", admin, R"({"name":"acme"})");
  ASSERT_TRUE(dup);
  ExpectOpenAiError(*dup, 409, "conflict_error");
  auto bad = Post("/api/tenants", admin, R"({"name":"Not Valid"})");
  ASSERT_TRUE(bad);
  ExpectOpenAiError(*bad, 400, "invalid_request_error");
  EXPECT_EQ(ParseObject(bad->body)["error"].as_object()["param"].as_string(), "name");

  // A key for the tenant, made by the platform admin.
  auto k = Post("/api/keys", admin, R"({"tenant":"acme","scopes":["admin"]})");
  ASSERT_TRUE(k);
  ASSERT_EQ(k->status, 201) << k->body;
  const std::string acme_admin(ParseObject(k->body)["key"].as_string());

  // The tenant admin manages its own keys but not tenants or other tenants.
  auto own = Get("/api/keys", Bearer(acme_admin));
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 200);
  EXPECT_EQ(ParseObject(own->body)["data"].as_array().size(), 1u);
  auto list_tenants = Get("/api/tenants", Bearer(acme_admin));
  ASSERT_TRUE(list_tenants);
  EXPECT_EQ(list_tenants->status, 403);
  auto other = Post("/api/keys", acme_admin, R"({"tenant":"system","scopes":["admin"]})");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403) << other->body;
  auto me = Get("/api/me", Bearer(acme_admin));
  ASSERT_TRUE(me);
  EXPECT_EQ(ParseObject(me->body)["tenant"].as_object()["name"].as_string(), "acme");

  // Deleting the tenant takes its keys with it.
  HttpClient c(server_->port());
  auto del = c.Send("DELETE", "/api/tenants/" + tenant_id, Bearer(admin));
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200) << del->body;
  auto gone = Get("/api/tenants/acme", Bearer(admin));
  ASSERT_TRUE(gone);
  ExpectOpenAiError(*gone, 404, "not_found_error");
  auto sys = c.Send("DELETE", "/api/tenants/system", Bearer(admin));
  ASSERT_TRUE(sys);
  EXPECT_EQ(sys->status, 409);
}

TEST_F(ServerTest, BadRequestsGetPreciseErrors) {
  const std::string admin = server_->admin_key();
  auto malformed = Post("/api/tenants", admin, R"({"name": "acme")");
  ASSERT_TRUE(malformed);
  ExpectOpenAiError(*malformed, 400, "invalid_request_error");

  HttpClient c(server_->port());
  auto wrong_type = c.Send("POST", "/api/tenants",
                           {{"Authorization", "Bearer " + admin}, {"Content-Type", "text/plain"}},
                           R"({"name":"acme"})");
  ASSERT_TRUE(wrong_type);
  ExpectOpenAiError(*wrong_type, 415, "invalid_request_error");

  auto not_object = Post("/api/tenants", admin, "[1,2]");
  ASSERT_TRUE(not_object);
  ExpectOpenAiError(*not_object, 400, "invalid_request_error");

  auto unknown = Get("/v1/nothing-here", Bearer(admin));
  ASSERT_TRUE(unknown);
  ExpectOpenAiError(*unknown, 404, "not_found_error");

  HttpClient c2(server_->port());
  auto method = c2.Send("PUT", "/v1/models", Bearer(admin), "{}");
  ASSERT_TRUE(method);
  EXPECT_EQ(method->status, 405);
  EXPECT_TRUE(method->Header("Allow").has_value());

  // A body above the limit (32 MiB by default) is refused from its Content-Length alone.
  HttpClient c3(server_->port());
  ASSERT_TRUE(c3.Connect());
  ASSERT_TRUE(c3.SendRaw("POST /api/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin +
                         "\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"));
  auto big = c3.ReadResponse();
  ASSERT_TRUE(big) << big.error().ToString();
  ExpectOpenAiError(*big, 413, "invalid_request_error");

  // Nothing of the above broke the server or created anything.
  auto list = Get("/api/tenants", Bearer(admin));
  ASSERT_TRUE(list);
  EXPECT_EQ(ParseObject(list->body)["data"].as_array().size(), 1u);  // only "system"
}

TEST_F(ServerTest, MetricsCountRequestsByRouteAndStatus) {
  ASSERT_EQ(Get("/v1/models", Bearer(server_->admin_key()))->status, 200);
  ASSERT_EQ(Get("/v1/models")->status, 401);
  const std::regex ok(
      R"(yunzhi_http_requests_total\{[^}]*route="/v1/models"[^}]*status="200"[^}]*\} 1)");
  const std::regex unauthorised(
      R"(yunzhi_http_requests_total\{[^}]*route="/v1/models"[^}]*status="401"[^}]*\} 1)");
  // A request is counted once its last byte is written, which may be just after the client has
  // read it: poll the endpoint until both counts show (with a deadline).
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->status, 200);
    EXPECT_NE(m->Header("Content-Type").value_or("").find("text/plain"), std::string::npos);
    text = m->body;
    if (std::regex_search(text, ok) && std::regex_search(text, unauthorised)) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(text.find("# TYPE yunzhi_http_requests_total counter"), std::string::npos) << text;
  EXPECT_TRUE(std::regex_search(text, ok)) << text;
  EXPECT_TRUE(std::regex_search(text, unauthorised)) << text;
  EXPECT_NE(text.find("yunzhi_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("yunzhi_http_requests_in_flight"), std::string::npos);
}

TEST_F(ServerTest, GracefulShutdownFinishesARequestInFlight) {
  // A request whose body is still arriving when SIGTERM comes is served, then the server exits.
  const std::string body = R"({"name":"late-tenant"})";
  HttpClient c(server_->port());
  ASSERT_TRUE(c.Connect());
  ASSERT_TRUE(c.SendRaw("POST /api/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                        server_->admin_key() +
                        "\r\nContent-Type: application/json\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 5)));
  // Make sure the server has the request head before the signal (it answers other requests).
  ASSERT_EQ(Get("/healthz")->status, 200);
  server_->process().Signal(SIGTERM);
  // New connections are refused once the listener is closed.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  bool refused = false;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    HttpClient probe(server_->port(), 1s);
    refused = !probe.Connect();
    if (!refused) std::this_thread::sleep_for(20ms);  // polling a condition with a deadline
  }
  EXPECT_TRUE(refused);
  ASSERT_TRUE(c.SendRaw(body.substr(5)));
  auto r = c.ReadResponse();
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->Header("Connection").value_or(""), "close");
  auto code = server_->process().Wait(20s);
  EXPECT_EQ(code, 0) << server_->process().err();
  server_.reset();

  // The tenant made it to the store.
  auto list = Cli(data_dir(), {"tenants", "list"});
  EXPECT_NE(list.out.find("late-tenant"), std::string::npos) << list.out << list.err;
}

// --- Start-up failures: each gives a precise error and touches nothing ---

TEST(ServerStartTest, AdminKeyIsPrintedOnlyOnFirstStart) {
  TempDir dir;
  {
    Server first(dir.path());
    ASSERT_TRUE(first.started()) << first.process().err();
    EXPECT_FALSE(first.admin_key().empty());
    EXPECT_EQ(first.Stop(), 0);
  }
  Server second(dir.path());
  ASSERT_TRUE(second.started()) << second.process().err();
  EXPECT_TRUE(second.admin_key().empty()) << second.process().out();
  EXPECT_EQ(second.Stop(), 0);
}

TEST(ServerStartTest, SecondServerOnSameDataDirIsRefused) {
  TempDir dir;
  Server first(dir.path());
  ASSERT_TRUE(first.started());
  auto second = RunCommand({kBinary, "serve", "--data-dir", dir.path(), "--port", "0"});
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("in use by another yunzhi server"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(first.process().pid())), std::string::npos)
      << second.err;
  // The first one is unharmed.
  HttpClient c(first.port());
  auto r = c.Send("GET", "/v1/models", Bearer(first.admin_key()));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(first.Stop(), 0);
}

TEST(ServerStartTest, PortInUseIsAClearError) {
  TempDir a, b;
  Server first(a.path());
  ASSERT_TRUE(first.started());
  auto second = RunCommand({kBinary, "serve", "--data-dir", b.path(), "--port",
                            std::to_string(first.port())});
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("cannot listen on"), std::string::npos) << second.err;
  EXPECT_EQ(first.Stop(), 0);
}

TEST(ServerStartTest, UnwritableDataDirIsAClearError) {
  TempDir dir;
  // A regular file where the data dir should be, and a path under /proc (unwritable even for
  // root).
  const std::string file = dir.path() + "/file";
  std::ofstream(file) << "x";
  for (const std::string& bad : {file, std::string("/proc/yunzhi-no-such/data")}) {
    auto r = RunCommand({kBinary, "serve", "--data-dir", bad, "--port", "0"});
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("data dir"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  }
  if (geteuid() != 0) {
    const std::string ro = dir.path() + "/ro";
    ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
    auto r = RunCommand({kBinary, "serve", "--data-dir", ro, "--port", "0"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("not writable"), std::string::npos) << r.err;
  }
}

TEST(ServerStartTest, CorruptConfigFileIsAClearError) {
  TempDir dir;
  const std::string config = dir.path() + "/yunzhi.toml";
  std::ofstream(config) << "[server]\nport = 8080\nhost = \"127.0.0.1\n";  // unterminated string
  auto r = RunCommand({kBinary, "serve", "--config", config, "--data-dir", dir.path() + "/d"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(config), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(":3"), std::string::npos) << "error should name line 3: " << r.err;
  // Nothing was created.
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/d"));

  std::ofstream(config) << "[server]\nprot = 8080\n";  // typo
  auto typo = RunCommand({kBinary, "serve", "--config", config, "--data-dir", dir.path() + "/d"});
  EXPECT_NE(typo.exit_code, 0);
  EXPECT_NE(typo.err.find("server.port"), std::string::npos) << typo.err;

  auto missing = RunCommand({kBinary, "serve", "--config", dir.path() + "/nope.toml"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("nope.toml"), std::string::npos) << missing.err;
}

TEST(CliTest, VersionHelpAndConfigShow) {
  auto v = RunCommand({kBinary, "version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("yunzhi "), std::string::npos);
  for (const char* sub : {"serve", "keys", "tenants", "config"}) {
    auto h = RunCommand({kBinary, sub, "--help"});
    EXPECT_EQ(h.exit_code, 0) << sub;
    EXPECT_NE(h.out.find("--data-dir"), std::string::npos) << sub << ": " << h.out;
  }
  TempDir dir;
  auto show = RunCommand({kBinary, "config", "show", "--data-dir", dir.path()},
                         {{"YUNZHI_SERVER_PORT", "9123"}});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("9123"), std::string::npos) << show.out;
  auto bad = RunCommand({kBinary, "keys", "create", "--scopes", "root", "--data-dir", dir.path()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("unknown scope 'root'"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace yunzhi::testing
