#include "yunzhi/platform/tenants.h"

#include <gtest/gtest.h>

#include "platform/platform_test_util.h"
#include "yunzhi/base/ids.h"

namespace yunzhi::platform {
namespace {

class TenantsTest : public ::testing::Test {
 protected:
  std::unique_ptr<store::Database> db_ = testing::NewDatabase();
  FakeClock clock_;
  Tenants tenants_{*db_, clock_};
};

TEST_F(TenantsTest, CreatesFindsAndListsTenantsInCreationOrder) {
  auto a = tenants_.Create("acme");
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_TRUE(IsValidId(a->id, "ten"));
  EXPECT_EQ(a->created_at_ms, clock_.NowUnixMs());
  clock_.Advance(std::chrono::milliseconds(5));
  ASSERT_TRUE(tenants_.Create("beta-corp_2"));

  auto by_name = tenants_.Find("acme");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, a->id);
  auto by_id = tenants_.Find(a->id);
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->name, "acme");

  auto list = tenants_.List();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "acme");
  EXPECT_EQ((*list)[1].name, "beta-corp_2");
}

TEST_F(TenantsTest, RejectsBadAndDuplicateNames) {
  for (const char* bad : {"", "Acme", "-acme", "has space", "ünï", "a/b"}) {
    auto t = tenants_.Create(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(t.error().code, Code::kInvalidArgument) << bad;
    EXPECT_EQ(t.error().param, "name");
  }
  EXPECT_FALSE(tenants_.Create(std::string(64, 'a')));
  ASSERT_TRUE(tenants_.Create("acme"));
  auto dup = tenants_.Create("acme");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Code::kAlreadyExists);
  EXPECT_NE(dup.error().message.find("acme"), std::string::npos);
}

TEST_F(TenantsTest, SystemTenantIsCreatedOnceAndCannotBeDeleted) {
  auto s1 = tenants_.EnsureSystem();
  ASSERT_TRUE(s1) << s1.error().ToString();
  auto s2 = tenants_.EnsureSystem();
  ASSERT_TRUE(s2);
  EXPECT_EQ(s1->id, s2->id);
  EXPECT_TRUE(s1->system);
  EXPECT_EQ(s1->name, kSystemTenantName);
  auto del = tenants_.Delete("system");
  ASSERT_FALSE(del);
  EXPECT_EQ(del.error().code, Code::kFailedPrecondition);
}

TEST_F(TenantsTest, DeleteRemovesTenantAndUnknownIsNotFound) {
  ASSERT_TRUE(tenants_.Create("acme"));
  ASSERT_TRUE(tenants_.Delete("acme"));
  auto gone = tenants_.Find("acme");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Code::kNotFound);
  auto again = tenants_.Delete("acme");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kNotFound);
}

}  // namespace
}  // namespace yunzhi::platform
