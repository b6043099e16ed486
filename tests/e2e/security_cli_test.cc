// The real `yunzhi` binary: `audit verify` / `audit list` on a data dir whose database file is
// tampered with, `keys rotate-master`, and `serve` refusing a wrong or missing master key.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"
#include "yunzhi/base/crypto.h"
#include "yunzhi/store/database.h"

namespace yunzhi::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::string kBinary = YUNZHI_BINARY;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SecurityCliTest : public ::testing::Test {
 protected:
  std::string data_dir() const { return dir_.path() + "/data"; }
  fs::path key_file() const { return fs::path(data_dir()) / "master.key"; }

  CommandResult Cli(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--data-dir");
    argv.push_back(data_dir());
    env.emplace("USER", "auditor");
    return RunCommand(argv, env, 60s);
  }

  // Runs SQL on the data dir's database file, as an attacker with file access would.
  void Tamper(const std::string& sql) {
    store::DatabaseOptions options;
    options.url = data_dir() + "/yunzhi.db";
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    auto r = (*db)->Execute(sql);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  TempDir dir_;
};

TEST_F(SecurityCliTest, AuditVerifyPassesThenFailsOnATamperedDatabaseFile) {
  CommandResult t = Cli({"tenants", "create", "acme"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  CommandResult k = Cli({"keys", "create", "--tenant", "acme", "--scopes", "read"});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  const std::string secret = k.out.substr(0, k.out.find('\n'));
  CommandResult rv = Cli({"keys", "revoke", secret.substr(0, 11)});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  ASSERT_EQ(Cli({"tenants", "create", "beta"}).exit_code, 0);

  CommandResult ok = Cli({"audit", "verify"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("audit log intact: 4 entries"));

  CommandResult list = Cli({"audit", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  json::value entries = json::parse(list.out);
  ASSERT_EQ(entries.as_array().size(), 4u);
  const char* actions[] = {"tenant.create", "key.create", "key.revoke", "tenant.create"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(entries.as_array()[i].at("action").as_string(), actions[i]);
    EXPECT_EQ(entries.as_array()[i].at("actor").as_string(), "cli:auditor");
  }
  CommandResult only = Cli({"audit", "list", "--action", "key.revoke"});
  ASSERT_EQ(only.exit_code, 0);
  EXPECT_THAT(only.out, HasSubstr("key.revoke"));
  EXPECT_THAT(only.out, ::testing::Not(HasSubstr("tenant.create")));

  Tamper("UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 2");
  CommandResult bad = Cli({"audit", "verify"});
  EXPECT_EQ(bad.exit_code, 1) << bad.out;
  EXPECT_THAT(bad.out, HasSubstr("seq 2"));
  EXPECT_THAT(bad.out, HasSubstr("edited"));

  // Put the field back, then cut off the tail: still caught.
  Tamper("UPDATE audit_log SET actor = 'cli:auditor' WHERE seq = 2");
  ASSERT_EQ(Cli({"audit", "verify"}).exit_code, 0);
  Tamper("DELETE FROM audit_log WHERE seq = 4");
  CommandResult cut = Cli({"audit", "verify"});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_THAT(cut.out, HasSubstr("seq 4"));
}

TEST_F(SecurityCliTest, RotateMasterReplacesTheKeyFileAndRefusesBesideARunningServer) {
  ASSERT_EQ(Cli({"tenants", "create", "acme"}).exit_code, 0);
  // The first keyring use (tenant deletion opens it) creates the master key file.
  ASSERT_EQ(Cli({"tenants", "create", "gone"}).exit_code, 0);
  CommandResult del = Cli({"tenants", "delete", "gone"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  ASSERT_TRUE(fs::exists(key_file()));
  EXPECT_EQ(fs::status(key_file()).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const std::string old_key = ReadAll(key_file());

  CommandResult rot = Cli({"keys", "rotate-master"});
  ASSERT_EQ(rot.exit_code, 0) << rot.err;
  const std::string new_key = ReadAll(key_file());
  EXPECT_NE(new_key, old_key);
  EXPECT_EQ(new_key.size(), 65u);

  // The old key no longer opens the data dir.
  CommandResult stale = Cli({"serve", "--port", "0"}, {{"YUNZHI_MASTER_KEY", old_key.substr(0, 64)}});
  EXPECT_NE(stale.exit_code, 0);
  EXPECT_THAT(stale.err, HasSubstr("master key does not match this data dir"));

  ChildProcess server({kBinary, "serve", "--port", "0", "--data-dir", data_dir()});
  ASSERT_TRUE(server.WaitForOutput(
      [](const std::string& out) { return out.find("serving on") != std::string::npos; }, 60s))
      << server.err();
  CommandResult busy = Cli({"keys", "rotate-master"});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_THAT(busy.err, HasSubstr("while a server runs"));
  EXPECT_EQ(ReadAll(key_file()), new_key);
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(30s), 0);
  CommandResult audit = Cli({"audit", "list", "--action", "keys.rotate_master"});
  EXPECT_THAT(audit.out, HasSubstr("keys.rotate_master"));
}

TEST_F(SecurityCliTest, ServeRefusesAWrongOrMissingMasterKey) {
  ASSERT_EQ(Cli({"tenants", "create", "acme"}).exit_code, 0);
  {
    ChildProcess server({kBinary, "serve", "--port", "0", "--data-dir", data_dir()});
    ASSERT_TRUE(server.WaitForOutput(
        [](const std::string& out) { return out.find("serving on") != std::string::npos; }, 60s))
        << server.err();
    EXPECT_THAT(server.err(), HasSubstr("Back it up"));
    server.Signal(SIGTERM);
    ASSERT_EQ(server.Wait(30s), 0);
  }
  const std::string db_before = ReadAll(fs::path(data_dir()) / "yunzhi.db");
  const std::string key = ReadAll(key_file());
  std::ofstream(key_file(), std::ios::trunc)
      << crypto::HexEncode(crypto::RandomBytes(32)) << "\n";
  CommandResult wrong = Cli({"serve", "--port", "0"});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.err, HasSubstr("master key does not match this data dir"));

  fs::remove(key_file());
  CommandResult missing = Cli({"serve", "--port", "0"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("is missing"));
  EXPECT_FALSE(fs::exists(key_file()));  // never silently regenerated
  EXPECT_EQ(ReadAll(fs::path(data_dir()) / "yunzhi.db"), db_before);

  // The right key through the environment works, and is not written to a file.
  CommandResult env_ok = RunCommand({kBinary, "tenants", "delete", "acme", "--data-dir", data_dir()},
                                    {{"YUNZHI_MASTER_KEY", key.substr(0, 64)}}, 60s);
  EXPECT_EQ(env_ok.exit_code, 0) << env_ok.err;
  EXPECT_FALSE(fs::exists(key_file()));
}

// Through `yunzhi serve`: a tenant's uploaded document lands sealed in its blob store, the
// server reads it back, the upload is audited, and deleting the tenant destroys its data key
// and its data directory.
TEST_F(SecurityCliTest, ServerSealsTenantDocumentsAndShredsThemWithTheTenant) {
  ChildProcess server({kBinary, "serve", "--port", "0", "--data-dir", data_dir(), "--log-level",
                       "warn"});
  ASSERT_TRUE(server.WaitForOutput(
      [](const std::string& out) { return out.find("serving on") != std::string::npos; }, 60s))
      << server.err();
  std::smatch m;
  const std::string out = server.out();
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))")));
  const uint16_t port = static_cast<uint16_t>(std::stoi(m[1]));
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"((yz-[A-Za-z0-9]{40}))")));
  const std::string admin = m[1];
  auto call = [&](const std::string& method, const std::string& target, const std::string& key,
                  const std::string& body = "", const std::string& type = "application/json") {
    HttpClient c(port, 30s);
    HeaderList h{{"Authorization", "Bearer " + key}};
    if (!body.empty()) h.emplace_back("Content-Type", type);
    auto r = c.Send(method, target, h, body);
    EXPECT_TRUE(r) << method << " " << target;
    return r ? *r : ClientResponse{};
  };
  auto json_of = [](const ClientResponse& r) { return json::parse(r.body); };

  auto t = call("POST", "/api/tenants", admin, R"({"name":"acme"})");
  ASSERT_EQ(t.status, 201) << t.body;
  const std::string acme(json_of(t).at("id").as_string());
  auto k = call("POST", "/api/keys", admin, R"({"tenant":"acme","scopes":["admin"]})");
  ASSERT_EQ(k.status, 201) << k.body;
  const std::string acme_key(json_of(k).at("key").as_string());
  ASSERT_EQ(call("POST", "/api/spaces", acme_key, R"({"name":"vault"})").status, 201);

  const std::string marker = "ZEBRA-LAUNCH-CODE-4471";
  std::string doc;
  for (int i = 0; i < 50; ++i) doc += "Paragraph " + std::to_string(i) + ": " + marker + ".\n";
  auto up = call("POST", "/api/spaces/vault/documents?name=secret.txt", acme_key, doc,
                 "text/plain");
  ASSERT_EQ(up.status, 202) << up.body;
  const std::string job(json_of(up).at("id").as_string());
  std::string status;
  for (int i = 0; i < 600 && status != "succeeded" && status != "failed"; ++i) {
    status = std::string(json_of(call("GET", "/api/jobs/" + job, acme_key)).at("status").as_string());
    if (status != "succeeded") std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(status, "succeeded");

  // No blob of the tenant holds the plaintext.
  const fs::path tenant_dir = fs::path(data_dir()) / "tenants" / acme;
  ASSERT_TRUE(fs::exists(tenant_dir / "blobs")) << tenant_dir;
  int n_blobs = 0;
  for (const auto& e : fs::recursive_directory_iterator(tenant_dir / "blobs")) {
    if (!e.is_regular_file()) continue;
    ++n_blobs;
    EXPECT_EQ(ReadAll(e.path()).find(marker), std::string::npos) << e.path();
  }
  EXPECT_GE(n_blobs, 1);
  // Nor does any other file of the tenant (its database and WAL: the full-text index holds keyed
  // tokens, the file name is sealed), in any case or as the analysed term "zebra".
  for (const auto& e : fs::recursive_directory_iterator(tenant_dir)) {
    if (!e.is_regular_file()) continue;
    std::string bytes = ReadAll(e.path());
    for (char& c : bytes) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* needle : {"zebra-launch-code-4471", "zebra", "secret.txt"}) {
      EXPECT_EQ(bytes.find(needle), std::string::npos) << needle << " in " << e.path();
    }
  }
  // The server itself reads it back.
  auto docs = json_of(call("GET", "/api/spaces/vault/documents", acme_key));
  const std::string doc_id(docs.at("data").as_array()[0].at("id").as_string());
  auto content = call("GET", "/api/spaces/vault/documents/" + doc_id + "/content", acme_key);
  EXPECT_EQ(content.status, 200);
  EXPECT_EQ(content.body, doc);

  auto del = call("DELETE", "/api/tenants/acme", admin);
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_FALSE(fs::exists(tenant_dir));
  {
    store::DatabaseOptions options;
    options.url = data_dir() + "/yunzhi.db";
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db);
    auto n = (*db)->QueryOne("SELECT COUNT(*) FROM tenant_keys WHERE tenant_id = ?", {acme});
    ASSERT_TRUE(n && *n);
    EXPECT_EQ((*n)->Int(0), 0);
  }
  auto trail = json_of(call("GET", "/api/audit?tenant=" + acme, admin));
  std::vector<std::string> actions;
  for (const auto& e : trail.at("data").as_array()) actions.emplace_back(e.at("action").as_string());
  EXPECT_THAT(actions, ::testing::Contains("document.upload"));
  EXPECT_THAT(actions, ::testing::Contains("tenant.delete"));
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(30s), 0);
  CommandResult verify = Cli({"audit", "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out;
}

}  // namespace
}  // namespace yunzhi::testing
