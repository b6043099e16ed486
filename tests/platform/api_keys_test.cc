#include "yunzhi/platform/api_keys.h"

#include <gtest/gtest.h>

#include "platform/platform_test_util.h"
#include "yunzhi/base/crypto.h"

namespace yunzhi::platform {
namespace {

class ApiKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = tenants_.Create("acme");
    ASSERT_TRUE(t);
    tenant_ = *t;
  }
  std::unique_ptr<store::Database> db_ = testing::NewDatabase();
  FakeClock clock_;
  Tenants tenants_{*db_, clock_};
  ApiKeys keys_{*db_, tenants_, clock_,
                ApiKeysOptions{std::chrono::milliseconds(2000), std::chrono::milliseconds(60000)}};
  Tenant tenant_;
};

TEST(ScopesTest, ParseImplicationAndErrors) {
  auto s = Scopes::Parse("admin");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->Allows(Scope::kAdmin));
  EXPECT_TRUE(s->Allows(Scope::kInference));
  EXPECT_TRUE(s->Allows(Scope::kRead));
  auto r = Scopes::Parse("read");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->Allows(Scope::kRead));
  EXPECT_FALSE(r->Allows(Scope::kInference));
  EXPECT_FALSE(r->Allows(Scope::kAdmin));
  auto both = Scopes::Parse("read, inference");
  ASSERT_TRUE(both);
  EXPECT_EQ(both->ToString(), "inference,read");
  auto bad = Scopes::Parse("root");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("root"), std::string::npos);
}

TEST_F(ApiKeysTest, KeyIsShownOnceAndStoredOnlyAsHash) {
  auto created = keys_.Create(tenant_.id, {"ci", Scopes::Of({Scope::kInference}), std::nullopt});
  ASSERT_TRUE(created) << created.error().ToString();
  const std::string& secret = created->secret;
  EXPECT_TRUE(ApiKeys::LooksLikeKey(secret));
  EXPECT_EQ(created->key.prefix, secret.substr(0, 11));
  // Nothing in the table holds the secret itself; its hash is there.
  auto rows = db_->Query("SELECT * FROM api_keys");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  bool found_hash = false;
  for (size_t i = 0; i < (*rows)[0].size(); ++i) {
    const std::string cell = (*rows)[0].Text(i);
    EXPECT_EQ(cell.find(secret), std::string::npos);
    if (cell == crypto::Sha256Hex(secret)) found_hash = true;
  }
  EXPECT_TRUE(found_hash);
  // Listing never returns the secret either (ApiKey has no field for it) but shows the prefix.
  auto list = keys_.List(tenant_.id);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].prefix, created->key.prefix);
}

TEST_F(ApiKeysTest, AuthenticatesValidKeyAndRecordsLastUse) {
  auto created = keys_.Create(tenant_.id, {"", Scopes::Of({Scope::kRead}), 30});
  ASSERT_TRUE(created);
  auto p = keys_.Authenticate(created->secret);
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(p->tenant_id, tenant_.id);
  EXPECT_EQ(p->tenant_name, "acme");
  EXPECT_EQ(p->key_id, created->key.id);
  EXPECT_EQ(p->requests_per_minute, 30);
  EXPECT_FALSE(p->IsPlatformAdmin());
  auto found = keys_.Find(created->key.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->last_used_at_ms, clock_.NowUnixMs());

  // Within the resolution the time is not rewritten; after it, it is.
  const int64_t first = clock_.NowUnixMs();
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(keys_.Authenticate(created->secret));
  EXPECT_EQ(keys_.Find(created->key.id)->last_used_at_ms, first);
  clock_.Advance(std::chrono::seconds(61));
  ASSERT_TRUE(keys_.Authenticate(created->secret));
  EXPECT_EQ(keys_.Find(created->key.id)->last_used_at_ms, clock_.NowUnixMs());
}

TEST_F(ApiKeysTest, RejectsUnknownMalformedAndRevokedKeys) {
  const std::vector<std::string> bad_tokens = {"", "nope", "yz-short",
                                               "yz-" + std::string(40, '!'),
                                               "yz-" + std::string(40, 'a')};
  for (const std::string& bad : bad_tokens) {
    auto p = keys_.Authenticate(bad);
    ASSERT_FALSE(p) << bad;
    EXPECT_EQ(p.error().code, Code::kUnauthenticated);
    EXPECT_EQ(p.error().detail, "invalid_api_key");
  }
  auto created = keys_.Create(tenant_.id, {});
  ASSERT_TRUE(created);
  ASSERT_TRUE(keys_.Authenticate(created->secret));
  auto revoked = keys_.Revoke(created->key.prefix);
  ASSERT_TRUE(revoked);
  EXPECT_FALSE(revoked->active());
  // Revocation through the same object takes effect at once, cache or not.
  auto p = keys_.Authenticate(created->secret);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnauthenticated);
  // Revoking again is fine; the first revocation time stays.
  auto again = keys_.Revoke(created->key.id);
  ASSERT_TRUE(again);
}

TEST_F(ApiKeysTest, RevocationByAnotherProcessIsSeenAfterCacheTtl) {
  auto created = keys_.Create(tenant_.id, {});
  ASSERT_TRUE(created);
  ASSERT_TRUE(keys_.Authenticate(created->secret));
  // Another process (the CLI) revokes straight in the database.
  Tenants other_tenants(*db_, clock_);
  ApiKeys other(*db_, other_tenants, clock_);
  ASSERT_TRUE(other.Revoke(created->key.id));
  ASSERT_TRUE(keys_.Authenticate(created->secret));  // still cached
  clock_.Advance(std::chrono::milliseconds(2001));
  auto p = keys_.Authenticate(created->secret);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kUnauthenticated);
}

TEST_F(ApiKeysTest, ValidatesOptionsAndTenant) {
  auto no_scope = keys_.Create(tenant_.id, {"x", Scopes(), std::nullopt});
  ASSERT_FALSE(no_scope);
  EXPECT_EQ(no_scope.error().code, Code::kInvalidArgument);
  auto bad_rpm = keys_.Create(tenant_.id, {"x", Scopes::Of({Scope::kRead}), 0});
  ASSERT_FALSE(bad_rpm);
  EXPECT_EQ(bad_rpm.error().param, "requests_per_minute");
  auto no_tenant = keys_.Create("ghost", {});
  ASSERT_FALSE(no_tenant);
  EXPECT_EQ(no_tenant.error().code, Code::kNotFound);
}

TEST_F(ApiKeysTest, PlatformAdminOnlyOnSystemTenant) {
  auto system = tenants_.EnsureSystem();
  ASSERT_TRUE(system);
  EXPECT_FALSE(*keys_.HasActivePlatformAdminKey());
  auto tenant_admin = keys_.Create(tenant_.id, {"", Scopes::Of({Scope::kAdmin}), std::nullopt});
  ASSERT_TRUE(tenant_admin);
  EXPECT_FALSE(*keys_.HasActivePlatformAdminKey());
  auto p = keys_.Authenticate(tenant_admin->secret);
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->IsPlatformAdmin());
  EXPECT_TRUE(p->CanAdminister(tenant_.id));
  EXPECT_FALSE(p->CanAdminister(system->id));

  auto admin = keys_.Create(system->id, {"", Scopes::Of({Scope::kAdmin}), std::nullopt});
  ASSERT_TRUE(admin);
  EXPECT_TRUE(*keys_.HasActivePlatformAdminKey());
  auto ap = keys_.Authenticate(admin->secret);
  ASSERT_TRUE(ap);
  EXPECT_TRUE(ap->IsPlatformAdmin());
  EXPECT_TRUE(ap->CanAdminister(tenant_.id));
  ASSERT_TRUE(keys_.Revoke(admin->key.id));
  EXPECT_FALSE(*keys_.HasActivePlatformAdminKey());
}

TEST_F(ApiKeysTest, DeletingTenantRemovesItsKeys) {
  auto created = keys_.Create(tenant_.id, {});
  ASSERT_TRUE(created);
  ASSERT_TRUE(tenants_.Delete(tenant_.id));
  auto list = keys_.List();
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  clock_.Advance(std::chrono::seconds(3));
  EXPECT_FALSE(keys_.Authenticate(created->secret));
}

}  // namespace
}  // namespace yunzhi::platform
