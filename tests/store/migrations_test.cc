#include "yunzhi/store/migrations.h"

#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/store/database.h"

#include "store/store_test_util.h"

namespace yunzhi::store {
namespace {

using testing::ForkedChild;
using ::testing::HasSubstr;
using testing::TempDir;

// Plain CREATE TABLE (no IF NOT EXISTS): running a migration twice would fail, so the tests
// notice.
const std::vector<Migration> kThree = {
    {1, "create a", "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT)", ""},
    {2, "seed a", "INSERT INTO a (name) VALUES ('first'); INSERT INTO a (name) VALUES ('second')",
     ""},
    {3, "create b", "CREATE TABLE b (a_id INTEGER REFERENCES a(id)); CREATE INDEX b_a ON b(a_id)",
     ""},
};

std::vector<Migration> FirstN(size_t n) {
  return std::vector<Migration>(kThree.begin(), kThree.begin() + static_cast<long>(n));
}

class MigrationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DatabaseOptions options;
    options.url = "sqlite:" + (dir_ / "m.db").string();
    auto db = Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
  }

  int Version(const std::string& module) {
    auto v = SchemaVersion(*db_, module);
    EXPECT_TRUE(v) << v.error().ToString();
    return v ? *v : -1;
  }

  int64_t Count(const std::string& sql) {
    auto row = db_->QueryOne(sql);
    EXPECT_TRUE(row && *row);
    return row && *row ? (*row)->Int(0) : -1;
  }

  TempDir dir_;
  std::unique_ptr<Database> db_;
};

TEST_F(MigrationsTest, FreshDatabaseIsAtVersionZero) { EXPECT_EQ(Version("platform"), 0); }

TEST_F(MigrationsTest, AppliesInOrderAndRecordsEach) {
  ASSERT_OK(Migrate(*db_, "hub", kThree));
  EXPECT_EQ(Version("hub"), 3);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM a"), 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM b"), 0);
  ASSERT_OK_AND_ASSIGN(auto rows,
                       db_->Query("SELECT version, name, applied_at_ms FROM schema_migrations "
                                  "WHERE module = 'hub' ORDER BY version"));
  ASSERT_EQ(rows.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rows[i].Int(0), kThree[i].version);
    EXPECT_EQ(rows[i].Text(1), kThree[i].name);
    EXPECT_GT(rows[i].Int(2), 1'600'000'000'000);  // milliseconds since the epoch
  }
}

TEST_F(MigrationsTest, RerunIsANoOpAndNewMigrationsApplyIncrementally) {
  ASSERT_OK(Migrate(*db_, "hub", FirstN(2)));
  EXPECT_EQ(Version("hub"), 2);
  ASSERT_OK(Migrate(*db_, "hub", FirstN(2)));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM a"), 2);  // seed not applied twice
  ASSERT_OK(Migrate(*db_, "hub", kThree));
  EXPECT_EQ(Version("hub"), 3);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM a"), 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM schema_migrations"), 3);
}

TEST_F(MigrationsTest, FailingMigrationRollsBackOnlyItself) {
  std::vector<Migration> migrations = FirstN(2);
  migrations.push_back({3, "broken",
                        "CREATE TABLE c (x); INSERT INTO c VALUES (1); "
                        "INSERT INTO nowhere VALUES (1)",
                        ""});
  migrations.push_back({4, "never reached", "CREATE TABLE d (x)", ""});
  Status s = Migrate(*db_, "hub", migrations);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_THAT(s.error().message, HasSubstr("migration 3 of module 'hub' (broken) failed"));
  EXPECT_THAT(s.error().message, HasSubstr("no such table: nowhere"));
  EXPECT_EQ(Version("hub"), 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM a"), 2);  // earlier migrations stay
  // Nothing of migration 3 remains: its CREATE TABLE was rolled back with it.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('c', 'd')"), 0);

  // Once fixed, it applies from where it stopped.
  migrations[2].sql = "CREATE TABLE c (x); INSERT INTO c VALUES (1)";
  ASSERT_OK(Migrate(*db_, "hub", migrations));
  EXPECT_EQ(Version("hub"), 4);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM c"), 1);
}

TEST_F(MigrationsTest, RefusesDowngrade) {
  ASSERT_OK(Migrate(*db_, "hub", kThree));
  Status s = Migrate(*db_, "hub", FirstN(2));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_THAT(s.error().message, HasSubstr("version 3"));
  EXPECT_THAT(s.error().message, HasSubstr("version 2"));
  Status none = Migrate(*db_, "hub", {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(Version("hub"), 3);
}

TEST_F(MigrationsTest, ModulesAreIndependent) {
  ASSERT_OK(Migrate(*db_, "hub", FirstN(2)));
  ASSERT_OK(Migrate(*db_, "platform", {{1, "create keys", "CREATE TABLE keys (k TEXT)", ""}}));
  EXPECT_EQ(Version("hub"), 2);
  EXPECT_EQ(Version("platform"), 1);
  EXPECT_EQ(Version("knowledge"), 0);
  // A module's higher version is no downgrade for another.
  ASSERT_OK(Migrate(*db_, "platform", {{1, "create keys", "CREATE TABLE keys (k TEXT)", ""}}));
  ASSERT_OK(Migrate(*db_, "hub", kThree));
  EXPECT_EQ(Version("hub"), 3);
  EXPECT_EQ(Version("platform"), 1);
}

TEST_F(MigrationsTest, RejectsBadVersionLists) {
  for (const std::vector<Migration>& bad : std::vector<std::vector<Migration>>{
           {{0, "zero", "SELECT 1", ""}},
           {{2, "b", "SELECT 1", ""}, {1, "a", "SELECT 1", ""}},
           {{1, "a", "SELECT 1", ""}, {1, "again", "SELECT 1", ""}},
       }) {
    Status s = Migrate(*db_, "hub", bad);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  }
  Status unnamed = Migrate(*db_, "", FirstN(1));
  ASSERT_FALSE(unnamed);
  EXPECT_EQ(unnamed.error().code, Code::kInvalidArgument);
  EXPECT_EQ(Version("hub"), 0);
}

// Forwards to a SQLite database but claims to be PostgreSQL, to see which text Migrate picks.
class PretendPostgres final : public Database {
 public:
  explicit PretendPostgres(Database& inner) : inner_(inner) {}
  Result<int64_t> Execute(std::string_view sql, std::vector<Value> params) override {
    return inner_.Execute(sql, std::move(params));
  }
  Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params) override {
    return inner_.Query(sql, std::move(params));
  }
  Status Transact(const std::function<Status(Executor&)>& fn) override {
    return inner_.Transact(fn);
  }
  std::string_view dialect() const override { return "postgres"; }

 private:
  Database& inner_;
};

TEST_F(MigrationsTest, PicksPostgresTextOnlyForPostgres) {
  const std::vector<Migration> migrations = {
      {1, "dialects", "CREATE TABLE picked_sqlite (x)", "CREATE TABLE picked_postgres (x)"},
      // Without a PostgreSQL text, both dialects run `sql`.
      {2, "portable", "CREATE TABLE IF NOT EXISTS portable (x); INSERT INTO portable VALUES (1)",
       ""},
  };
  ASSERT_OK(Migrate(*db_, "sqlite_side", migrations));
  PretendPostgres pg(*db_);
  ASSERT_OK(Migrate(pg, "postgres_side", migrations));
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'picked_sqlite'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'picked_postgres'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM portable"), 2);
  EXPECT_EQ(Version("sqlite_side"), 2);
  EXPECT_EQ(Version("postgres_side"), 2);
}

// Without IF NOT EXISTS and with a seed row under a primary key: applying any of them twice
// fails.
const std::vector<Migration> kRace = {
    {1, "create t", "CREATE TABLE t (id INTEGER PRIMARY KEY)", ""},
    {2, "seed t", "INSERT INTO t (id) VALUES (1)", ""},
    {3, "create u", "CREATE TABLE u (id INTEGER PRIMARY KEY)", ""},
};

// Runs `before_first_transaction` just before its first Transact: a second server that
// migrates in the gap between this one reading the schema version and starting its transaction.
class InterleavingDatabase final : public Database {
 public:
  InterleavingDatabase(Database& inner, std::function<void()> before_first_transaction)
      : inner_(inner), hook_(std::move(before_first_transaction)) {}
  Result<int64_t> Execute(std::string_view sql, std::vector<Value> params) override {
    return inner_.Execute(sql, std::move(params));
  }
  Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params) override {
    return inner_.Query(sql, std::move(params));
  }
  Status Transact(const std::function<Status(Executor&)>& fn) override {
    if (hook_) std::exchange(hook_, nullptr)();
    return inner_.Transact(fn);
  }
  std::string_view dialect() const override { return inner_.dialect(); }

 private:
  Database& inner_;
  std::function<void()> hook_;
};

TEST(MigrationsRaceTest, SkipsMigrationsAppliedByAnotherServerAfterItLooked) {
  TempDir dir;
  DatabaseOptions options;
  options.url = "sqlite:" + (dir / "race.db").string();
  ASSERT_OK_AND_ASSIGN(auto mine, Database::Open(options));
  ASSERT_OK_AND_ASSIGN(auto theirs, Database::Open(options));
  InterleavingDatabase interleaved(*mine, [&] { ASSERT_OK(Migrate(*theirs, "race", kRace)); });
  // Migrate reads version 0, then the other server applies 1..3, then our transactions start:
  // each must see its migration recorded and skip it (re-running "CREATE TABLE t" would fail).
  ASSERT_OK(Migrate(interleaved, "race", kRace));
  ASSERT_OK_AND_ASSIGN(auto n, mine->QueryOne("SELECT COUNT(*) FROM schema_migrations"));
  EXPECT_EQ(n->Int(0), 3);
  ASSERT_OK_AND_ASSIGN(auto seeded, mine->QueryOne("SELECT COUNT(*) FROM t"));
  EXPECT_EQ(seeded->Int(0), 1);
}

TEST(MigrationsRaceTest, TwoProcessesStartingTogetherApplyEachMigrationOnce) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "race.db").string();
  ForkedChild child([&]() -> std::string {
    DatabaseOptions options;
    options.url = url;
    auto db = Database::Open(options);
    if (!db) return db.error().ToString();
    Status s = Migrate(**db, "race", kRace);
    return s ? "" : s.error().ToString();
  });
  DatabaseOptions options;
  options.url = url;
  auto db = Database::Open(options);
  ASSERT_TRUE(db) << db.error().ToString();
  child.Start();
  Status s = Migrate(**db, "race", kRace);
  EXPECT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(child.Wait(), "");
  ASSERT_OK_AND_ASSIGN(auto rows, (*db)->Query("SELECT version FROM schema_migrations "
                                               "WHERE module = 'race' ORDER BY version"));
  ASSERT_EQ(rows.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto seeded, (*db)->QueryOne("SELECT COUNT(*) FROM t"));
  EXPECT_EQ(seeded->Int(0), 1);
}

TEST(MigrationsRaceTest, ThreadsWithSeparateDatabasesApplyEachMigrationOnce) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "race.db").string();
  std::vector<std::unique_ptr<Database>> dbs;
  for (int i = 0; i < 4; ++i) {
    DatabaseOptions options;
    options.url = url;
    auto db = Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    dbs.push_back(std::move(*db));
  }
  std::vector<std::string> errors(dbs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < dbs.size(); ++i) {
    threads.emplace_back([&, i] {
      Status s = Migrate(*dbs[i], "race", kRace);
      if (!s) errors[i] = s.error().ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  ASSERT_OK_AND_ASSIGN(auto n, dbs[0]->QueryOne("SELECT COUNT(*) FROM schema_migrations"));
  EXPECT_EQ(n->Int(0), 3);
  ASSERT_OK_AND_ASSIGN(auto seeded, dbs[0]->QueryOne("SELECT COUNT(*) FROM t"));
  EXPECT_EQ(seeded->Int(0), 1);
}

}  // namespace
}  // namespace yunzhi::store
