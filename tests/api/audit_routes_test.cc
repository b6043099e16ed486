// GET /api/audit and the audit entries the tenant and key routes append, through the router with
// real keys, a real SQLite file and a real keyring; no sockets.
#include <filesystem>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "yunzhi/api/app.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/audit.h"
#include "yunzhi/platform/keyring.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/data_dir.h"

#include "support/process.h"

#include "api/route_call.h"

namespace yunzhi::api {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using platform::Scope;

using Reply = testing::RouteReply;

class AuditRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = store::DataDir::Open(fs::path(tmp_.path()) / "data");
    ASSERT_TRUE(dir);
    store::DatabaseOptions options;
    options.url = dir->database_url();
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(platform::MigrateSchema(*db_));
    tenants_ = std::make_unique<platform::Tenants>(*db_, clock_);
    keys_ = std::make_unique<platform::ApiKeys>(*db_, *tenants_, clock_);
    limiter_ = std::make_unique<platform::RateLimiter>(clock_);
    audit_ = std::make_unique<platform::AuditLog>(*db_, clock_);
    platform::KeyringOptions ko;
    ko.master_key_file = dir->path() / "master.key";
    auto kr = platform::Keyring::Open(*db_, ko, clock_);
    ASSERT_TRUE(kr) << kr.error().ToString();
    keyring_ = std::move(*kr);
    auto system = tenants_->EnsureSystem();
    ASSERT_TRUE(system);
    system_id_ = system->id;
    admin_key_ = Key(system->id, {Scope::kAdmin});

    ctx_.db = db_.get();
    ctx_.tenants = tenants_.get();
    ctx_.keys = keys_.get();
    ctx_.limiter = limiter_.get();
    ctx_.metrics = &metrics_;
    ctx_.audit = audit_.get();
    ctx_.keyring = keyring_.get();
    RegisterRoutes(router_, ctx_);
  }

  std::string Key(const std::string& tenant_id, std::initializer_list<Scope> scopes) {
    return testing::NewKey(*keys_, tenant_id, scopes);
  }

  // Every answer of these routes is JSON.
  Reply Call(const std::string& method, const std::string& target, const std::string& key,
             const std::string& body = "") {
    Reply r = testing::CallRoute(router_, method, target, key, body);
    EXPECT_FALSE(r.body.is_null()) << r.raw;
    return r;
  }

  // Creates a tenant and an admin key of it through the API (both audited).
  std::pair<std::string, std::string> NewTenantWithAdmin(const std::string& name) {
    Reply t = Call("POST", "/api/tenants", admin_key_, R"({"name":")" + name + R"("})");
    EXPECT_EQ(t.status, 201) << t.raw;
    const std::string id(t.body.at("id").as_string());
    Reply k = Call("POST", "/api/keys", admin_key_,
                   R"({"tenant":")" + id + R"(","scopes":["admin"]})");
    EXPECT_EQ(k.status, 201) << k.raw;
    return {id, std::string(k.body.at("key").as_string())};
  }

  static std::vector<std::string> Actions(const Reply& r) {
    std::vector<std::string> out;
    for (const auto& e : r.body.at("data").as_array()) {
      out.emplace_back(e.at("action").as_string());
    }
    return out;
  }

  yunzhi::testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<platform::Tenants> tenants_;
  std::unique_ptr<platform::ApiKeys> keys_;
  std::unique_ptr<platform::RateLimiter> limiter_;
  std::unique_ptr<platform::AuditLog> audit_;
  std::unique_ptr<platform::Keyring> keyring_;
  metrics::Registry metrics_;
  AppContext ctx_;
  Router router_;
  std::string system_id_;
  std::string admin_key_;
};

TEST_F(AuditRoutesTest, TenantAndKeyChangesAreAuditedWithTheirActor) {
  auto [acme, acme_admin] = NewTenantWithAdmin("acme");
  Reply all = Call("GET", "/api/audit", admin_key_);
  ASSERT_EQ(all.status, 200) << all.raw;
  EXPECT_EQ(Actions(all), (std::vector<std::string>{"tenant.create", "key.create"}));
  const auto& first = all.body.at("data").as_array()[0].as_object();
  EXPECT_EQ(first.at("tenant_id").as_string(), acme);
  EXPECT_EQ(first.at("target").as_string(), acme);
  EXPECT_EQ(first.at("details").at("name").as_string(), "acme");
  EXPECT_EQ(first.at("seq").as_int64(), 1);
  EXPECT_EQ(first.at("time").as_int64(), FakeClock::kDefaultStartUnixMs / 1000);
  EXPECT_TRUE(first.at("actor").as_string().starts_with("key_"));
  EXPECT_EQ(first.at("hash").as_string().size(), 64u);

  // Revoking through the tenant's own admin key: the actor is that key.
  Reply mine = Call("GET", "/api/me", acme_admin);
  const std::string acme_admin_id(mine.body.at("key").at("id").as_string());
  Reply other = Call("POST", "/api/keys", acme_admin, R"({"scopes":["read"]})");
  ASSERT_EQ(other.status, 201);
  const std::string other_id(other.body.at("id").as_string());
  ASSERT_EQ(Call("DELETE", "/api/keys/" + other_id, acme_admin).status, 200);
  Reply revokes = Call("GET", "/api/audit?action=key.revoke", admin_key_);
  ASSERT_EQ(revokes.body.at("data").as_array().size(), 1u);
  const auto& rev = revokes.body.at("data").as_array()[0];
  EXPECT_EQ(rev.at("actor").as_string(), acme_admin_id);
  EXPECT_EQ(rev.at("target").as_string(), other_id);

  Reply by_actor = Call("GET", "/api/audit?actor=" + acme_admin_id, admin_key_);
  EXPECT_EQ(Actions(by_actor), (std::vector<std::string>{"key.create", "key.revoke"}));

  auto v = audit_->Verify();
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->intact) << v->problem;
}

TEST_F(AuditRoutesTest, TenantAdminSeesOnlyItsOwnTenantsEntries) {
  auto [acme, acme_admin] = NewTenantWithAdmin("acme");
  auto [beta, beta_admin] = NewTenantWithAdmin("beta");
  ASSERT_EQ(Call("POST", "/api/keys", beta_admin, R"({"scopes":["read"]})").status, 201);

  Reply a = Call("GET", "/api/audit", acme_admin);
  ASSERT_EQ(a.status, 200) << a.raw;
  ASSERT_EQ(a.body.at("data").as_array().size(), 2u);
  for (const auto& e : a.body.at("data").as_array()) {
    EXPECT_EQ(e.at("tenant_id").as_string(), acme);
  }
  Reply b = Call("GET", "/api/audit", beta_admin);
  ASSERT_EQ(b.body.at("data").as_array().size(), 3u);
  for (const auto& e : b.body.at("data").as_array()) {
    EXPECT_EQ(e.at("tenant_id").as_string(), beta);
  }
  // Naming another tenant is refused, by id and by name; its own is fine.
  EXPECT_EQ(Call("GET", "/api/audit?tenant=" + beta, acme_admin).status, 403);
  EXPECT_EQ(Call("GET", "/api/audit?tenant=beta", acme_admin).status, 403);
  EXPECT_EQ(Call("GET", "/api/audit?tenant=all", acme_admin).status, 403);
  EXPECT_EQ(Call("GET", "/api/audit?tenant=acme", acme_admin).status, 200);
  // A read key is not enough.
  const std::string reader = Key(acme, {Scope::kRead});
  EXPECT_EQ(Call("GET", "/api/audit", reader).status, 403);

  // The platform admin sees everything, or one tenant.
  Reply all = Call("GET", "/api/audit", admin_key_);
  EXPECT_EQ(all.body.at("data").as_array().size(), 5u);
  Reply only_beta = Call("GET", "/api/audit?tenant=beta", admin_key_);
  ASSERT_EQ(only_beta.status, 200);
  EXPECT_EQ(only_beta.body.at("data").as_array().size(), 3u);
  // ... and that cross-tenant read is itself audited.
  Reply reads = Call("GET", "/api/audit?action=admin.read&tenant=all", admin_key_);
  EXPECT_GE(reads.body.at("data").as_array().size(), 1u);
}

TEST_F(AuditRoutesTest, FiltersAndPagesWithValidation) {
  NewTenantWithAdmin("acme");
  clock_.Advance(std::chrono::seconds(100));
  NewTenantWithAdmin("beta");
  NewTenantWithAdmin("gamma");
  const int64_t t0 = FakeClock::kDefaultStartUnixMs / 1000;
  // (Each platform-admin read appends an admin.read entry after answering, so filter by action.)
  Reply early =
      Call("GET", fmt::format("/api/audit?to={}&action=tenant.create", t0 + 50), admin_key_);
  EXPECT_EQ(early.body.at("data").as_array().size(), 1u);
  Reply late =
      Call("GET", fmt::format("/api/audit?from={}&action=tenant.create", t0 + 50), admin_key_);
  EXPECT_EQ(late.body.at("data").as_array().size(), 2u);

  Reply page1 = Call("GET", "/api/audit?action=key.create&limit=2", admin_key_);
  ASSERT_EQ(page1.status, 200);
  ASSERT_EQ(page1.body.at("data").as_array().size(), 2u);
  EXPECT_TRUE(page1.body.at("has_more").as_bool());
  const int64_t next = page1.body.at("next_after").as_int64();
  EXPECT_EQ(next, page1.body.at("data").as_array()[1].at("seq").as_int64());
  Reply page2 =
      Call("GET", fmt::format("/api/audit?action=key.create&limit=2&after={}", next), admin_key_);
  ASSERT_EQ(page2.body.at("data").as_array().size(), 1u);
  EXPECT_GT(page2.body.at("data").as_array()[0].at("seq").as_int64(), next);
  EXPECT_FALSE(page2.body.at("has_more").as_bool());

  for (const char* bad : {"limit=0", "limit=abc", "limit=100000", "after=-1", "from=x"}) {
    Reply r = Call("GET", std::string("/api/audit?") + bad, admin_key_);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.raw;
  }
}

TEST_F(AuditRoutesTest, DeletingATenantDestroysItsKeyFirstAndIsAudited) {
  auto [acme, acme_admin] = NewTenantWithAdmin("acme");
  auto cipher = keyring_->ForTenant(acme);
  ASSERT_TRUE(cipher);
  const std::string sealed = (*cipher)->Seal("acme's document");
  auto count = [&] {
    auto r = db_->QueryOne("SELECT COUNT(*) FROM tenant_keys WHERE tenant_id = ?", {acme});
    return (r && *r) ? (*r)->Int(0) : -1;
  };
  ASSERT_EQ(count(), 1);
  Reply del = Call("DELETE", "/api/tenants/" + acme, admin_key_);
  ASSERT_EQ(del.status, 200) << del.raw;
  EXPECT_EQ(count(), 0);
  auto fresh = keyring_->ForTenant(acme);
  ASSERT_TRUE(fresh);
  EXPECT_FALSE((*fresh)->Open(sealed));
  // The system tenant is refused before its key could be touched.
  EXPECT_EQ(Call("DELETE", "/api/tenants/" + system_id_, admin_key_).status, 409);

  // The deleted tenant's trail stays readable by its id.
  Reply trail = Call("GET", "/api/audit?tenant=" + acme, admin_key_);
  ASSERT_EQ(trail.status, 200) << trail.raw;
  EXPECT_EQ(Actions(trail), (std::vector<std::string>{"tenant.create", "key.create",
                                                      "tenant.delete"}));
}

TEST_F(AuditRoutesTest, WithoutAnAuditLogTheRouteAnswers503) {
  AppContext ctx = ctx_;
  ctx.audit = nullptr;
  Router router;
  RegisterRoutes(router, ctx);
  HttpRequest req;
  req.method = "GET";
  req.path = req.target = "/api/audit";
  req.headers.emplace("Authorization", "Bearer " + admin_key_);
  Router::Match m = router.Find("GET", "/api/audit");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ((*m.handler)(req).status, 503);
  // And the tenant routes still work, unaudited.
  req.method = "POST";
  req.path = req.target = "/api/tenants";
  req.body = R"({"name":"quiet"})";
  req.headers.emplace("Content-Type", "application/json");
  m = router.Find("POST", "/api/tenants");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ((*m.handler)(req).status, 201);
}

}  // namespace
}  // namespace yunzhi::api
