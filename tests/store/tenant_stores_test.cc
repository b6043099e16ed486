// Per-tenant databases and blob stores under one root: isolation by directory, migration on first
// open, id validation (no path escapes), purge.
#include "yunzhi/store/tenant_stores.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "support/process.h"

namespace yunzhi::store {
namespace {

namespace fs = std::filesystem;

TenantStoresOptions Options(const fs::path& root, std::atomic<int>* hook_calls = nullptr) {
  TenantStoresOptions o;
  o.root = root;
  o.migrations.push_back(
      {"notes", {{1, "create notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"}}});
  if (hook_calls != nullptr) {
    o.sqlite_connection_hooks.push_back([hook_calls](sqlite3* db) -> Status {
      ++*hook_calls;
      return db != nullptr ? OkStatus() : InternalError("no connection");
    });
  }
  return o;
}

TEST(TenantStoresTest, EachTenantHasItsOwnMigratedDatabase) {
  testing::TempDir tmp;
  std::atomic<int> hooks{0};
  auto stores = TenantStores::Open(Options(fs::path(tmp.path()) / "tenants", &hooks));
  ASSERT_TRUE(stores) << stores.error().ToString();
  auto a = (*stores)->DatabaseOf("ten_A1");
  auto b = (*stores)->DatabaseOf("ten_B2");
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_TRUE(b);
  ASSERT_TRUE((*a)->Execute("INSERT INTO notes (body) VALUES ('secret of A')"));
  auto rows_b = (*b)->Query("SELECT body FROM notes");
  ASSERT_TRUE(rows_b);
  EXPECT_TRUE(rows_b->empty());
  auto rows_a = (*a)->Query("SELECT body FROM notes");
  ASSERT_TRUE(rows_a);
  ASSERT_EQ(rows_a->size(), 1u);
  EXPECT_GT(hooks.load(), 0);
  EXPECT_TRUE(fs::exists((*stores)->DirOf("ten_A1") / "tenant.db"));
  // The same handle comes back.
  auto again = (*stores)->DatabaseOf("ten_A1");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), a->get());
  auto tenants = (*stores)->ExistingTenants();
  std::sort(tenants.begin(), tenants.end());
  EXPECT_EQ(tenants, (std::vector<std::string>{"ten_A1", "ten_B2"}));
}

TEST(TenantStoresTest, RejectsIdsThatCouldEscapeTheRoot) {
  testing::TempDir tmp;
  auto stores = TenantStores::Open(Options(fs::path(tmp.path()) / "tenants"));
  ASSERT_TRUE(stores);
  for (const char* bad : {"", "ten_", "../ten_x", "ten_../x", "ten_a/b", "tenx", "ten_a b"}) {
    auto db = (*stores)->DatabaseOf(bad);
    ASSERT_FALSE(db) << bad;
    EXPECT_EQ(db.error().code, Code::kInvalidArgument);
    EXPECT_FALSE((*stores)->Blobs(bad));
    EXPECT_FALSE((*stores)->Purge(bad));
  }
}

TEST(TenantStoresTest, PurgeRemovesEverythingAndReopensEmpty) {
  testing::TempDir tmp;
  auto stores = TenantStores::Open(Options(fs::path(tmp.path()) / "tenants"));
  ASSERT_TRUE(stores);
  {
    auto db = (*stores)->DatabaseOf("ten_X");
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Execute("INSERT INTO notes (body) VALUES ('x')"));
    auto blobs = (*stores)->Blobs("ten_X");
    ASSERT_TRUE(blobs);
    ASSERT_TRUE((*blobs)->Put("document bytes"));
  }
  ASSERT_TRUE((*stores)->Purge("ten_X"));
  EXPECT_FALSE(fs::exists((*stores)->DirOf("ten_X")));
  auto db = (*stores)->DatabaseOf("ten_X");
  ASSERT_TRUE(db);
  auto rows = (*db)->Query("SELECT count(*) FROM notes");
  ASSERT_TRUE(rows);
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

TEST(TenantStoresTest, ConcurrentFirstOpensShareOneDatabase) {
  testing::TempDir tmp;
  auto stores = TenantStores::Open(Options(fs::path(tmp.path()) / "tenants"));
  ASSERT_TRUE(stores);
  std::vector<std::thread> threads;
  std::vector<Database*> seen(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto db = (*stores)->DatabaseOf("ten_C");
      if (db) seen[i] = db->get();
    });
  }
  for (auto& t : threads) t.join();
  for (auto* p : seen) EXPECT_EQ(p, seen[0]);
  EXPECT_NE(seen[0], nullptr);
}

}  // namespace
}  // namespace yunzhi::store
