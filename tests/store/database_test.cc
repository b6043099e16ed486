#include "yunzhi/store/database.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "store/store_test_util.h"

namespace yunzhi::store {
namespace {

using testing::ForkedChild;
using ::testing::HasSubstr;
using testing::Pipe;
using testing::TempDir;

std::unique_ptr<Database> MustOpen(const std::string& url,
                                   std::chrono::milliseconds busy_timeout = std::chrono::seconds(5),
                                   int max_connections = 4) {
  DatabaseOptions options;
  options.url = url;
  options.busy_timeout = busy_timeout;
  options.max_connections = max_connections;
  auto db = Database::Open(options);
  if (!db) ADD_FAILURE() << "Open(" << url << "): " << db.error().ToString();
  return db ? std::move(*db) : nullptr;
}

int64_t Count(Executor& ex, const std::string& table) {
  auto row = ex.QueryOne("SELECT COUNT(*) FROM " + table);
  if (!row || !*row) {
    ADD_FAILURE() << "count of " << table << " failed";
    return -1;
  }
  return (*row)->Int(0);
}

// The behaviour shared by both kinds of SQLite database: a file and ":memory:".
class DatabaseTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    url_ = GetParam() ? ":memory:" : "sqlite:" + (dir_ / "test.db").string();
    db_ = MustOpen(url_);
    ASSERT_NE(db_, nullptr);
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Database> db_;
};

INSTANTIATE_TEST_SUITE_P(FileAndMemory, DatabaseTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Memory" : "File"; });

TEST_P(DatabaseTest, RoundTripsEveryValueType) {
  ASSERT_OK(db_->Execute("CREATE TABLE v (id INTEGER PRIMARY KEY, x)"));
  const std::string text_with_nul("a\0b\xE4\xBA\x91", 6);  // embedded NUL and "云"
  const std::string blob_bytes("\0\x01\xff\0zero", 8);
  const std::vector<Value> values = {
      nullptr,
      int64_t{0},
      std::numeric_limits<int64_t>::max(),
      std::numeric_limits<int64_t>::min(),
      3.25,
      -1e300,
      std::string(),
      text_with_nul,
      Blob{blob_bytes},
      Blob{},
  };
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_OK(
        db_->Execute("INSERT INTO v (id, x) VALUES (?, ?)", {static_cast<int64_t>(i), values[i]}));
  }
  ASSERT_OK_AND_ASSIGN(auto rows, db_->Query("SELECT id, x, typeof(x) FROM v ORDER BY id"));
  ASSERT_EQ(rows.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(rows[i].at(1), values[i]) << "row " << i << " stored as " << rows[i].Text(2);
  }
  // Empty text and the empty blob are values, not NULL.
  EXPECT_EQ(rows[6].Text(2), "text");
  EXPECT_EQ(rows[9].Text(2), "blob");
  EXPECT_TRUE(rows[0].IsNull(1));
  EXPECT_FALSE(rows[6].IsNull(1));
  EXPECT_FALSE(rows[9].IsNull(1));
}

TEST_P(DatabaseTest, RowAccessorsConvertLeniently) {
  ASSERT_OK_AND_ASSIGN(auto row, db_->QueryOne("SELECT 42, ' 17', 2.5, NULL, x'616263', 'abc'"));
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->size(), 6u);
  EXPECT_EQ(row->Text(0), "42");
  EXPECT_DOUBLE_EQ(row->Real(0), 42.0);
  EXPECT_EQ(row->Int(1), 17);
  EXPECT_EQ(row->Int(2), 2);
  EXPECT_EQ(row->Text(2), "2.5");
  EXPECT_EQ(row->Int(3), 0);
  EXPECT_EQ(row->Text(3), "");
  EXPECT_EQ(row->OptInt(3), std::nullopt);
  EXPECT_EQ(row->OptText(3), std::nullopt);
  EXPECT_EQ(row->OptInt(0), 42);
  EXPECT_EQ(row->Text(4), "abc");
  EXPECT_EQ(row->Int(5), 0);  // not a number
  EXPECT_THROW(row->Int(6), std::out_of_range);
}

TEST_P(DatabaseTest, QueryOneReturnsNulloptForNoRows) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  ASSERT_OK_AND_ASSIGN(auto row, db_->QueryOne("SELECT x FROM t"));
  EXPECT_FALSE(row.has_value());
}

TEST_P(DatabaseTest, ExecuteReturnsRowsChanged) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(int64_t n, db_->Execute("INSERT INTO t VALUES (?)", {int64_t{i}}));
    EXPECT_EQ(n, 1);
  }
  // Statements that change no rows report 0, not the count of the UPDATE before them (which
  // is what sqlite3_changes alone would still say).
  ASSERT_OK_AND_ASSIGN(int64_t updated, db_->Execute("UPDATE t SET x = x + 1"));
  EXPECT_EQ(updated, 3);
  ASSERT_OK_AND_ASSIGN(int64_t ddl, db_->Execute("CREATE TABLE u (y INTEGER)"));
  EXPECT_EQ(ddl, 0);
  ASSERT_OK(db_->Execute("UPDATE t SET x = x + 1"));
  ASSERT_OK_AND_ASSIGN(int64_t select, db_->Execute("SELECT * FROM t"));
  EXPECT_EQ(select, 0);
  ASSERT_OK_AND_ASSIGN(int64_t none, db_->Execute("DELETE FROM t WHERE x > 100"));
  EXPECT_EQ(none, 0);
  ASSERT_OK_AND_ASSIGN(int64_t deleted, db_->Execute("DELETE FROM t"));
  EXPECT_EQ(deleted, 3);
}

TEST_P(DatabaseTest, InsertReturningGivesGeneratedKey) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)"));
  ASSERT_OK_AND_ASSIGN(auto first, db_->QueryOne("INSERT INTO t (name) VALUES (?) RETURNING id",
                                                 {std::string("a")}));
  ASSERT_OK_AND_ASSIGN(auto second, db_->QueryOne("INSERT INTO t (name) VALUES (?) RETURNING id",
                                                  {std::string("b")}));
  ASSERT_TRUE(first && second);
  EXPECT_EQ(second->Int(0), first->Int(0) + 1);
  EXPECT_EQ(Count(*db_, "t"), 2);
}

TEST_P(DatabaseTest, MapsConstraintViolations) {
  ASSERT_OK(db_->Execute(R"(
      CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id),
                          n INTEGER CHECK (n >= 0));
      INSERT INTO parent (id, name) VALUES (1, 'one');)"));

  auto dup_unique = db_->Execute("INSERT INTO parent (id, name) VALUES (2, 'one')");
  ASSERT_FALSE(dup_unique);
  EXPECT_EQ(dup_unique.error().code, Code::kAlreadyExists) << dup_unique.error().ToString();
  EXPECT_THAT(dup_unique.error().message, HasSubstr("parent.name"));

  auto dup_key = db_->Execute("INSERT INTO parent (id, name) VALUES (1, 'uno')");
  ASSERT_FALSE(dup_key);
  EXPECT_EQ(dup_key.error().code, Code::kAlreadyExists) << dup_key.error().ToString();

  auto not_null = db_->Execute("INSERT INTO parent (id, name) VALUES (3, NULL)");
  ASSERT_FALSE(not_null);
  EXPECT_EQ(not_null.error().code, Code::kFailedPrecondition) << not_null.error().ToString();

  // Foreign keys are enforced (PRAGMA foreign_keys=ON on every connection).
  auto foreign = db_->Execute("INSERT INTO child (parent_id, n) VALUES (99, 1)");
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, Code::kFailedPrecondition) << foreign.error().ToString();

  auto check = db_->Execute("INSERT INTO child (parent_id, n) VALUES (1, -1)");
  ASSERT_FALSE(check);
  EXPECT_EQ(check.error().code, Code::kFailedPrecondition) << check.error().ToString();

  // The failed statements left nothing behind and the connection works.
  EXPECT_EQ(Count(*db_, "parent"), 1);
  EXPECT_EQ(Count(*db_, "child"), 0);
}

TEST_P(DatabaseTest, MapsSqlErrorsToInvalidArgument) {
  auto syntax = db_->Execute("CREATE TABEL t (x)");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().code, Code::kInvalidArgument);
  EXPECT_THAT(syntax.error().message, HasSubstr("syntax error"));
  EXPECT_THAT(syntax.error().message, HasSubstr("CREATE TABEL"));

  auto missing = db_->Query("SELECT * FROM no_such_table");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kInvalidArgument);
  EXPECT_THAT(missing.error().message, HasSubstr("no such table"));

  ASSERT_OK(db_->Execute("CREATE TABLE t (x, y)"));
  auto too_few = db_->Execute("INSERT INTO t VALUES (?, ?)", {int64_t{1}});
  ASSERT_FALSE(too_few);
  EXPECT_EQ(too_few.error().code, Code::kInvalidArgument);
  EXPECT_THAT(too_few.error().message, HasSubstr("2 placeholders but 1 parameters"));

  auto empty = db_->Execute("  ; ");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Code::kInvalidArgument);
}

TEST_P(DatabaseTest, ExecuteRunsSeveralStatementsInOrder) {
  ASSERT_OK_AND_ASSIGN(int64_t n, db_->Execute(R"(
      CREATE TABLE a (x INTEGER);  -- the next statement needs this table
      INSERT INTO a VALUES (1), (2);
      /* a comment between statements */
      INSERT INTO a SELECT x + 10 FROM a;
      -- trailing comment)"));
  EXPECT_EQ(n, 4);
  EXPECT_EQ(Count(*db_, "a"), 4);

  // A statement with a trailing comment is still one statement.
  ASSERT_OK_AND_ASSIGN(auto rows,
                       db_->Query("SELECT x FROM a WHERE x > ? -- big ones\n;", {int64_t{10}}));
  EXPECT_EQ(rows.size(), 2u);

  auto with_params =
      db_->Execute("INSERT INTO a VALUES (?); INSERT INTO a VALUES (?)", {int64_t{1}, int64_t{2}});
  ASSERT_FALSE(with_params);
  EXPECT_EQ(with_params.error().code, Code::kInvalidArgument);
  auto two_queries = db_->Query("SELECT 1; SELECT 2");
  ASSERT_FALSE(two_queries);
  EXPECT_EQ(two_queries.error().code, Code::kInvalidArgument);

  // A script that fails midway keeps the statements before the failure (each commits on its own)
  // and leaves no transaction open on the pooled connection.
  auto failing = db_->Execute("INSERT INTO a VALUES (100); INSERT INTO nowhere VALUES (1)");
  ASSERT_FALSE(failing);
  EXPECT_EQ(Count(*db_, "a"), 5);
  auto failing_tx =
      db_->Execute("BEGIN; INSERT INTO a VALUES (200); INSERT INTO nowhere VALUES (1)");
  ASSERT_FALSE(failing_tx);
  EXPECT_EQ(Count(*db_, "a"), 5);
  ASSERT_OK(db_->Transact(
      [](Executor& tx) { return tx.Execute("INSERT INTO a VALUES (300)").map([](int64_t) {}); }));
  EXPECT_EQ(Count(*db_, "a"), 6);
}

TEST_P(DatabaseTest, PreparedStatementReuseGivesSameResults) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"));
  const std::string insert = "INSERT INTO t (k, v) VALUES (?, ?)";
  for (int64_t i = 0; i < 50; ++i) {
    ASSERT_OK(db_->Execute(insert, {i, "v" + std::to_string(i)}));
  }
  // A failed run of a cached statement leaves it usable (reset, bindings cleared).
  auto dup = db_->Execute(insert, {int64_t{7}, std::string("again")});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Code::kAlreadyExists);
  ASSERT_OK(db_->Execute(insert, {int64_t{50}, std::string("v50")}));

  const std::string select = "SELECT v FROM t WHERE k = ?";
  for (int round = 0; round < 2; ++round) {
    for (int64_t i = 0; i <= 50; ++i) {
      ASSERT_OK_AND_ASSIGN(auto row, db_->QueryOne(select, {i}));
      ASSERT_TRUE(row.has_value());
      EXPECT_EQ(row->Text(0), "v" + std::to_string(i));
    }
  }
  // A cached "SELECT *" follows a schema change (SQLite re-prepares it).
  ASSERT_OK_AND_ASSIGN(auto before, db_->QueryOne("SELECT * FROM t WHERE k = 1"));
  ASSERT_OK(db_->Execute("ALTER TABLE t ADD COLUMN extra TEXT DEFAULT 'x'"));
  ASSERT_OK_AND_ASSIGN(auto after, db_->QueryOne("SELECT * FROM t WHERE k = 1"));
  ASSERT_TRUE(before && after);
  EXPECT_EQ(before->size(), 2u);
  EXPECT_EQ(after->size(), 3u);
  EXPECT_EQ(after->Text(2), "x");
  // More distinct statements than the cache holds: evicted ones are prepared again.
  for (int64_t i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(auto row,
                         db_->QueryOne("SELECT " + std::to_string(i) + " + k FROM t WHERE k = 1"));
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->Int(0), i + 1);
  }
  ASSERT_OK_AND_ASSIGN(auto again, db_->QueryOne(select, {int64_t{3}}));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->Text(0), "v3");
}

TEST_P(DatabaseTest, TransactCommitsOnOk) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  ASSERT_OK(db_->Transact([](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (2)"));
    // The transaction sees its own writes.
    YZ_ASSIGN_OR_RETURN(auto row, tx.QueryOne("SELECT COUNT(*) FROM t"));
    if (!row || row->Int(0) != 2) return InternalError("own writes not visible");
    return OkStatus();
  }));
  EXPECT_EQ(Count(*db_, "t"), 2);
}

TEST_P(DatabaseTest, TransactRollsBackOnError) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER UNIQUE)"));
  Status s = db_->Transact([](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    return NotFoundError("the thing went away");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kNotFound);
  EXPECT_EQ(s.error().message, "the thing went away");
  EXPECT_EQ(Count(*db_, "t"), 0);

  // A failing statement's error comes back unchanged and undoes the earlier ones too.
  s = db_->Transact([](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    return OkStatus();
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kAlreadyExists);
  EXPECT_EQ(Count(*db_, "t"), 0);
}

TEST_P(DatabaseTest, TransactRollsBackAndRethrowsOnException) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  EXPECT_THROW(
      {
        Status s = db_->Transact([](Executor& tx) -> Status {
          if (!tx.Execute("INSERT INTO t VALUES (1)")) return InternalError("insert failed");
          throw std::runtime_error("boom");
        });
        (void)s;
      },
      std::runtime_error);
  EXPECT_EQ(Count(*db_, "t"), 0);
  // The connection went back to the pool clean: the next transaction works.
  ASSERT_OK(db_->Transact(
      [](Executor& tx) { return tx.Execute("INSERT INTO t VALUES (2)").map([](int64_t) {}); }));
  EXPECT_EQ(Count(*db_, "t"), 1);
}

TEST_P(DatabaseTest, RefusesStatementsAfterTheTransactionEndedInsideTheCallback) {
  // SQLite itself ends a transaction on some errors (disk full, I/O); an explicit ROLLBACK
  // reaches the same state. Later statements must not run in autocommit mode, and the outcome
  // must not be reported as committed.
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  Status s = db_->Transact([](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    YZ_RETURN_IF_ERROR(tx.Execute("ROLLBACK"));
    auto after = tx.Execute("INSERT INTO t VALUES (2)");
    EXPECT_FALSE(after);
    if (!after) {
      EXPECT_EQ(after.error().code, Code::kUnavailable);
    }
    return OkStatus();
  });
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().message, HasSubstr("nothing was committed"));
  EXPECT_EQ(Count(*db_, "t"), 0);
}

TEST_P(DatabaseTest, RefusesDirectUseInsideOwnTransaction) {
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  Status s = db_->Transact([&](Executor&) -> Status {
    auto direct = db_->Execute("INSERT INTO t VALUES (1)");
    EXPECT_FALSE(direct);
    if (!direct) {
      EXPECT_EQ(direct.error().code, Code::kFailedPrecondition);
    }
    Status nested = db_->Transact([](Executor&) { return OkStatus(); });
    EXPECT_FALSE(nested);
    if (!nested) {
      EXPECT_EQ(nested.error().code, Code::kFailedPrecondition);
    }
    return OkStatus();
  });
  EXPECT_OK(s);
  // The mark is gone once the callback returned.
  EXPECT_OK(db_->Execute("INSERT INTO t VALUES (1)"));
}

TEST_P(DatabaseTest, IsOneDatabaseAcrossThreads) {
  // For ":memory:" this proves all callers share one in-memory database.
  ASSERT_OK(db_->Execute("CREATE TABLE t (x INTEGER)"));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (!db_->Execute("INSERT INTO t VALUES (?)", {int64_t{t * 100 + i}})) ++failures;
        if (!db_->Query("SELECT COUNT(*) FROM t")) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Count(*db_, "t"), 100);
}

TEST(DatabaseFileTest, UsesWalForeignKeysAndNormalSync) {
  TempDir dir;
  auto db = MustOpen((dir / "t.db").string());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->dialect(), "sqlite");
  // Check on several pooled connections: each must be configured, not just the first.
  std::vector<std::future<std::string>> results;
  std::promise<void> go;
  std::shared_future<void> go_f = go.get_future().share();
  for (int i = 0; i < 4; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      go_f.wait();
      auto mode = db->QueryOne("PRAGMA journal_mode");
      auto fk = db->QueryOne("PRAGMA foreign_keys");
      auto sync = db->QueryOne("PRAGMA synchronous");
      if (!mode || !fk || !sync || !*mode || !*fk || !*sync) return std::string("query failed");
      return (*mode)->Text(0) + "," + (*fk)->Text(0) + "," + (*sync)->Text(0);
    }));
  }
  go.set_value();
  for (auto& r : results) EXPECT_EQ(r.get(), "wal,1,1");  // synchronous NORMAL is 1
}

TEST(DatabaseFileTest, TwoDatabasesOnOneFileSeeEachOthersCommits) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "shared.db").string();
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_TRUE(a && b);
  ASSERT_OK(a->Execute("CREATE TABLE t (x INTEGER)"));
  ASSERT_OK(b->Execute("INSERT INTO t VALUES (1)"));
  ASSERT_OK(a->Execute("INSERT INTO t VALUES (2)"));
  EXPECT_EQ(Count(*a, "t"), 2);
  EXPECT_EQ(Count(*b, "t"), 2);
}

TEST(DatabaseFileTest, ReadersDoNotWaitForAWriter) {
  TempDir dir;
  auto db = MustOpen((dir / "t.db").string(), std::chrono::milliseconds(2000));
  ASSERT_NE(db, nullptr);
  ASSERT_OK(db->Execute("CREATE TABLE t (x INTEGER)"));
  ASSERT_OK(db->Execute("INSERT INTO t VALUES (1)"));
  ASSERT_OK(db->Transact([&](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (2)"));
    // Another thread reads while the write transaction is open: it sees the committed state
    // at once, without the uncommitted row.
    auto reader = std::async(std::launch::async, [&] { return Count(*db, "t"); });
    EXPECT_EQ(reader.get(), 1);
    return OkStatus();
  }));
  EXPECT_EQ(Count(*db, "t"), 2);
}

TEST(DatabaseFileTest, ConcurrentWritersFromThreadsAndTwoDatabases) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "t.db").string();
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_TRUE(a && b);
  ASSERT_OK(a->Execute("CREATE TABLE t (writer INTEGER, i INTEGER, PRIMARY KEY (writer, i))"));
  constexpr int kPerThread = 100;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(6);
  for (int w = 0; w < 6; ++w) {
    Database& db = w < 4 ? *a : *b;  // two "processes" (Database objects) on one file
    threads.emplace_back([&db, &errors, w] {
      for (int i = 0; i < kPerThread && errors[w].empty(); ++i) {
        Status s;
        if (i % 2 == 0) {
          s = db.Execute("INSERT INTO t VALUES (?, ?)", {int64_t{w}, int64_t{i}}).map([](int64_t) {
          });
        } else {
          s = db.Transact([&](Executor& tx) -> Status {
            YZ_ASSIGN_OR_RETURN(
                auto row, tx.QueryOne("SELECT COUNT(*) FROM t WHERE writer = ?", {int64_t{w}}));
            if (!row || row->Int(0) != i) return InternalError("lost a write");
            return tx.Execute("INSERT INTO t VALUES (?, ?)", {int64_t{w}, int64_t{i}})
                .map([](int64_t) {});
          });
        }
        if (!s) errors[w] = s.error().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int w = 0; w < 6; ++w) EXPECT_EQ(errors[w], "") << "writer " << w;
  EXPECT_EQ(Count(*a, "t"), 6 * kPerThread);
}

TEST(DatabaseFileTest, ConcurrentWriterInForkedProcess) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "t.db").string();
  constexpr int kChildRows = 200;
  // Fork before this process opens the file (see ForkedChild).
  ForkedChild child([&]() -> std::string {
    DatabaseOptions options;
    options.url = url;
    auto db = Database::Open(options);
    if (!db) return db.error().ToString();
    for (int i = 0; i < kChildRows; ++i) {
      Status s;
      if (i % 2 == 0) {
        s = (*db)->Execute("INSERT INTO t VALUES ('child', ?)", {int64_t{i}}).map([](int64_t) {});
      } else {
        s = (*db)->Transact([&](Executor& tx) {
          return tx.Execute("INSERT INTO t VALUES ('child', ?)", {int64_t{i}}).map([](int64_t) {});
        });
      }
      if (!s) return "child insert " + std::to_string(i) + ": " + s.error().ToString();
    }
    return "";
  });
  auto db = MustOpen(url);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(db->Execute("CREATE TABLE t (who TEXT, i INTEGER, PRIMARY KEY (who, i))"));
  child.Start();
  // Keep writing until a row of the child is committed, so the two writers certainly overlap.
  int64_t n_parent = 0;
  for (bool child_wrote = false; n_parent < 200 || !child_wrote; ++n_parent) {
    ASSERT_LT(n_parent, 1'000'000) << "the child never wrote";
    ASSERT_OK(db->Execute("INSERT INTO t VALUES ('parent', ?)", {n_parent}));
    ASSERT_OK_AND_ASSIGN(auto row, db->QueryOne("SELECT COUNT(*) FROM t WHERE who = 'child'"));
    child_wrote = row->Int(0) > 0;
  }
  EXPECT_EQ(child.Wait(), "");
  EXPECT_EQ(Count(*db, "t"), n_parent + kChildRows);
}

TEST(DatabaseFileTest, WriterGivesUpWhenAnotherProcessHoldsTheLockPastTheTimeout) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "t.db").string();
  const auto timeout = std::chrono::milliseconds(100);
  Pipe locked, release;
  ForkedChild child([&]() -> std::string {
    DatabaseOptions options;
    options.url = url;
    auto db = Database::Open(options);
    if (!db) return db.error().ToString();
    Status s = (*db)->Transact([&](Executor& tx) -> Status {
      YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
      locked.Send('y');
      if (release.Receive() != 'g') return InternalError("no release signal");
      return OkStatus();
    });
    return s ? "" : s.error().ToString();
  });
  auto db = MustOpen(url, timeout);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(db->Execute("CREATE TABLE t (x INTEGER)"));
  child.Start();
  ASSERT_EQ(locked.Receive(), 'y');
  auto start = std::chrono::steady_clock::now();
  auto blocked = db->Execute("INSERT INTO t VALUES (2)");
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, Code::kUnavailable);
  EXPECT_THAT(blocked.error().message, HasSubstr("database is locked by another process/writer"));
  EXPECT_GE(waited, timeout);
  EXPECT_EQ(Count(*db, "t"), 0);  // reading goes on under WAL
  release.Send('g');
  EXPECT_EQ(child.Wait(), "");
  EXPECT_EQ(Count(*db, "t"), 1);
  EXPECT_OK(db->Execute("INSERT INTO t VALUES (2)"));
}

TEST(DatabaseFileTest, WriterGivesUpWhenAnotherConnectionHoldsTheLockPastTheTimeout) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir / "t.db").string();
  const auto timeout = std::chrono::milliseconds(100);
  auto holder = MustOpen(url, timeout);
  auto other = MustOpen(url, timeout);
  ASSERT_TRUE(holder && other);
  ASSERT_OK(holder->Execute("CREATE TABLE t (x INTEGER)"));

  ASSERT_OK(holder->Transact([&](Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
    // `other` is a separate Database (as a second process would be): SQLite's file lock makes
    // it wait for the busy timeout, then give up.
    auto start = std::chrono::steady_clock::now();
    auto blocked = other->Execute("INSERT INTO t VALUES (2)");
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(blocked);
    if (!blocked) {
      EXPECT_EQ(blocked.error().code, Code::kUnavailable);
      EXPECT_THAT(blocked.error().message, HasSubstr("locked by another process/writer"));
    }
    EXPECT_GE(waited, timeout);
    Status tx_blocked = other->Transact([](Executor&) { return OkStatus(); });
    EXPECT_FALSE(tx_blocked);
    if (!tx_blocked) {
      EXPECT_EQ(tx_blocked.error().code, Code::kUnavailable);
    }
    // Reads are not blocked.
    EXPECT_EQ(Count(*other, "t"), 0);
    return OkStatus();
  }));
  EXPECT_EQ(Count(*other, "t"), 1);
  ASSERT_OK(other->Execute("INSERT INTO t VALUES (2)"));
}

TEST(DatabaseFileTest, WriterThreadGivesUpWhenATransactionOfItsProcessOutlastsTheTimeout) {
  TempDir dir;
  const auto timeout = std::chrono::milliseconds(100);
  auto db = MustOpen((dir / "t.db").string(), timeout);
  ASSERT_NE(db, nullptr);
  ASSERT_OK(db->Execute("CREATE TABLE t (x INTEGER)"));
  std::promise<void> started, release;
  auto holder = std::async(std::launch::async, [&] {
    return db->Transact([&](Executor& tx) -> Status {
      YZ_RETURN_IF_ERROR(tx.Execute("INSERT INTO t VALUES (1)"));
      started.set_value();
      release.get_future().wait();
      return OkStatus();
    });
  });
  started.get_future().wait();
  auto blocked = db->Execute("INSERT INTO t VALUES (2)");
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, Code::kUnavailable);
  EXPECT_THAT(blocked.error().message, HasSubstr("locked"));
  EXPECT_EQ(Count(*db, "t"), 0);  // reads go on meanwhile
  release.set_value();
  ASSERT_OK(holder.get());
  EXPECT_EQ(Count(*db, "t"), 1);
}

TEST(DatabaseFileTest, GivesUpWhenNoConnectionFreesWithinTheTimeout) {
  TempDir dir;
  auto db = MustOpen((dir / "t.db").string(), std::chrono::milliseconds(100), 1);
  ASSERT_NE(db, nullptr);
  std::promise<void> started, release;
  auto holder = std::async(std::launch::async, [&] {
    return db->Transact([&](Executor&) -> Status {
      started.set_value();
      release.get_future().wait();
      return OkStatus();
    });
  });
  started.get_future().wait();
  auto blocked = db->Query("SELECT 1");
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, Code::kUnavailable);
  EXPECT_THAT(blocked.error().message, HasSubstr("connections"));
  release.set_value();
  ASSERT_OK(holder.get());
  EXPECT_OK(db->Query("SELECT 1"));
}

Error OpenError(const std::string& url) {
  DatabaseOptions options;
  options.url = url;
  auto db = Database::Open(options);
  if (db) {
    ADD_FAILURE() << "Open(" << url << ") succeeded";
    return {};
  }
  return db.error();
}

TEST(DatabaseOpenTest, UnwritablePathsAreUnavailableWithThePath) {
  Error proc = OpenError("sqlite:/proc/yunzhi-test/x.db");
  EXPECT_EQ(proc.code, Code::kUnavailable);
  EXPECT_THAT(proc.message, HasSubstr("cannot open database /proc/yunzhi-test/x.db: "));
  EXPECT_THAT(proc.message, HasSubstr("does not exist"));

  TempDir dir;
  testing::WriteFile(dir / "file", "not a directory");
  Error under_file = OpenError((dir / "file" / "x.db").string());
  EXPECT_EQ(under_file.code, Code::kUnavailable);
  EXPECT_THAT(under_file.message,
              HasSubstr("cannot open database " + (dir / "file" / "x.db").string()));
  EXPECT_THAT(under_file.message, HasSubstr("Not a directory"));

  Error missing = OpenError((dir / "missing" / "x.db").string());
  EXPECT_EQ(missing.code, Code::kUnavailable);
  EXPECT_THAT(missing.message, HasSubstr("does not exist"));

  testing::WriteFile(dir / "garbage.db", std::string(4096, 'g'));
  Error garbage = OpenError((dir / "garbage.db").string());
  EXPECT_EQ(garbage.code, Code::kUnavailable);
  EXPECT_THAT(garbage.message, HasSubstr("not a database"));

  if (::geteuid() != 0) {  // root writes anywhere: the other cases above cover it
    std::filesystem::create_directory(dir / "ro");
    ::chmod((dir / "ro").c_str(), 0555);
    Error ro = OpenError((dir / "ro" / "x.db").string());
    EXPECT_EQ(ro.code, Code::kUnavailable);
    EXPECT_THAT(ro.message, HasSubstr((dir / "ro" / "x.db").string()));
    ::chmod((dir / "ro").c_str(), 0755);
  }
}

TEST(DatabaseOpenTest, DispatchesOnUrl) {
  EXPECT_EQ(OpenError("postgres://user@localhost/yunzhi").code, Code::kUnimplemented);
  EXPECT_EQ(OpenError("postgresql://localhost/yunzhi").code, Code::kUnimplemented);
  EXPECT_EQ(OpenError("mysql://localhost/yunzhi").code, Code::kInvalidArgument);
  EXPECT_EQ(OpenError("").code, Code::kInvalidArgument);
  EXPECT_EQ(OpenError("sqlite://host/x.db").code, Code::kInvalidArgument);
  EXPECT_EQ(OpenError("sqlite:").code, Code::kInvalidArgument);

  TempDir dir;
  for (const std::string& url :
       {"sqlite:" + (dir / "a.db").string(), "sqlite://" + (dir / "b.db").string(),
        (dir / "c.db").string(), std::string(":memory:"), std::string("sqlite::memory:")}) {
    auto db = MustOpen(url);
    ASSERT_NE(db, nullptr) << url;
    EXPECT_OK(db->Execute("CREATE TABLE t (x)"));
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "a.db"));
  EXPECT_TRUE(std::filesystem::exists(dir / "b.db"));
  EXPECT_TRUE(std::filesystem::exists(dir / "c.db"));

  DatabaseOptions bad;
  bad.url = ":memory:";
  bad.max_connections = 0;
  auto db = Database::Open(bad);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace yunzhi::store
