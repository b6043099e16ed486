#include "yunzhi/platform/audit.h"

#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "platform/platform_test_util.h"
#include "support/process.h"
#include "yunzhi/platform/schema.h"

namespace yunzhi::platform {
namespace {

using namespace std::chrono_literals;

class AuditLogTest : public ::testing::Test {
 protected:
  void AppendFive() {
    const char* actions[] = {"tenant.create", "key.create", "document.upload", "search",
                             "key.revoke"};
    for (int i = 0; i < 5; ++i) {
      AuditEvent e;
      e.tenant_id = i % 2 == 0 ? "ten_a" : "ten_b";
      e.actor = i < 3 ? "key_admin" : "cli:root";
      e.action = actions[i];
      e.target = "obj_" + std::to_string(i + 1);
      e.details_json = R"({"document_ids":["doc_)" + std::to_string(i) + R"("]})";
      auto s = log_.Append(e);
      ASSERT_TRUE(s) << s.error().ToString();
      clock_.Advance(1000ms);
    }
  }

  AuditVerification MustVerify() {
    auto v = log_.Verify();
    EXPECT_TRUE(v) << v.error().ToString();
    return v ? *v : AuditVerification{};
  }

  void Exec(const std::string& sql, std::vector<store::Value> params = {}) {
    auto r = db_->Execute(sql, std::move(params));
    ASSERT_TRUE(r) << sql << ": " << r.error().ToString();
  }

  std::unique_ptr<store::Database> db_ = testing::NewDatabase();
  FakeClock clock_;
  AuditLog log_{*db_, clock_};
};

TEST_F(AuditLogTest, AppendsAChainedLogAndVerifiesIt) {
  EXPECT_TRUE(MustVerify().intact);  // empty log
  AppendFive();
  auto all = log_.Query({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].prev_hash, AuditLog::kGenesisHash);
  for (size_t i = 0; i < all->size(); ++i) {
    const AuditEntry& e = (*all)[i];
    EXPECT_EQ(e.seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(e.time_ms, FakeClock::kDefaultStartUnixMs + static_cast<int64_t>(i) * 1000);
    EXPECT_EQ(e.hash, AuditLog::ComputeHash(e));
    EXPECT_EQ(e.hash.size(), 64u);
    if (i > 0) {
      EXPECT_EQ(e.prev_hash, (*all)[i - 1].hash);
    }
  }
  AuditVerification v = MustVerify();
  EXPECT_TRUE(v.intact) << v.problem;
  EXPECT_EQ(v.n_entries, 5);
  EXPECT_EQ(v.first_bad_seq, 0);
  EXPECT_EQ(v.last_hash, all->back().hash);
}

TEST_F(AuditLogTest, HashCoversEveryFieldAndFieldBoundaries) {
  AuditEntry e{1, 5, "t", "a", "act", "tg", "{}", std::string(AuditLog::kGenesisHash), ""};
  const std::string h = AuditLog::ComputeHash(e);
  AuditEntry shifted = e;  // same concatenation, different split: must differ
  shifted.actor = "";
  shifted.tenant_id = "ta";
  EXPECT_NE(AuditLog::ComputeHash(shifted), h);
  AuditEntry later = e;
  later.seq = 2;
  EXPECT_NE(AuditLog::ComputeHash(later), h);
}

TEST_F(AuditLogTest, QueryFiltersAndPages) {
  AppendFive();
  AuditFilter f;
  f.tenant_id = "ten_a";
  auto a = log_.Query(f);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ((*a)[1].seq, 3);

  f = {};
  f.actor = "cli:root";
  auto cli = log_.Query(f);
  ASSERT_TRUE(cli);
  ASSERT_EQ(cli->size(), 2u);
  EXPECT_EQ((*cli)[0].action, "search");

  f = {};
  f.action = "key.create";
  auto kc = log_.Query(f);
  ASSERT_TRUE(kc);
  ASSERT_EQ(kc->size(), 1u);
  EXPECT_EQ((*kc)[0].target, "obj_2");
  EXPECT_EQ((*kc)[0].details_json, R"({"document_ids":["doc_1"]})");

  f = {};
  f.from_ms = FakeClock::kDefaultStartUnixMs + 1000;
  f.to_ms = FakeClock::kDefaultStartUnixMs + 3000;
  auto range = log_.Query(f);
  ASSERT_TRUE(range);
  ASSERT_EQ(range->size(), 3u);
  EXPECT_EQ(range->front().seq, 2);
  EXPECT_EQ(range->back().seq, 4);

  f = {};
  f.limit = 2;
  f.after_seq = 2;
  auto page = log_.Query(f);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 3);
  EXPECT_EQ((*page)[1].seq, 4);

  f = {};
  f.limit = 0;
  auto bad = log_.Query(f);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
}

TEST_F(AuditLogTest, RejectsIncompleteEvents) {
  AuditEvent e{.tenant_id = "t", .actor = "", .action = "search", .target = ""};
  auto r = log_.Append(e);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  e.actor = "system";
  e.action = "";
  ASSERT_FALSE(log_.Append(e));
  e.action = "search";
  e.details_json = "[1,2]";
  r = log_.Append(e);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().param, "details");
  e.details_json = "";  // means {}
  ASSERT_TRUE(log_.Append(e));
  auto all = log_.Query({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].details_json, "{}");
}

TEST_F(AuditLogTest, EditingAnyFieldOfAnyEntryIsDetectedAtThatEntry) {
  AppendFive();
  const std::vector<std::pair<std::string, store::Value>> edits = {
      {"time_ms", int64_t{42}},          {"tenant_id", std::string("ten_evil")},
      {"actor", std::string("someone")}, {"action", std::string("nothing")},
      {"target", std::string("x")},      {"details", std::string("{}")},
      {"prev_hash", std::string(64, 'f')}, {"hash", std::string(64, 'e')}};
  for (int64_t seq = 1; seq <= 5; ++seq) {
    for (const auto& [column, value] : edits) {
      auto original = db_->QueryOne("SELECT " + column + " FROM audit_log WHERE seq = ?", {seq});
      ASSERT_TRUE(original && *original);
      Exec("UPDATE audit_log SET " + column + " = ? WHERE seq = ?", {value, seq});
      AuditVerification v = MustVerify();
      EXPECT_FALSE(v.intact) << column << " of " << seq;
      EXPECT_EQ(v.first_bad_seq, seq) << column << ": " << v.problem;
      EXPECT_FALSE(v.problem.empty());
      Exec("UPDATE audit_log SET " + column + " = ? WHERE seq = ?", {(*original)->at(0), seq});
      ASSERT_TRUE(MustVerify().intact) << "restoring " << column;
    }
  }
}

TEST_F(AuditLogTest, DeletingAMiddleEntryIsDetected) {
  AppendFive();
  Exec("DELETE FROM audit_log WHERE seq = 3");
  AuditVerification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_seq, 3);
  EXPECT_NE(v.problem.find("missing"), std::string::npos) << v.problem;
}

TEST_F(AuditLogTest, DeletingTheLastEntriesIsDetectedThroughTheHead) {
  AppendFive();
  Exec("DELETE FROM audit_log WHERE seq >= 4");
  AuditVerification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_seq, 4);
  EXPECT_NE(v.problem.find("tail"), std::string::npos) << v.problem;
}

TEST_F(AuditLogTest, DeletingTheHeadRowIsDetected) {
  AppendFive();
  Exec("DELETE FROM audit_head");
  AuditVerification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_seq, 5);
}

TEST_F(AuditLogTest, DeletingTheFirstEntryIsDetected) {
  AppendFive();
  Exec("DELETE FROM audit_log WHERE seq = 1");
  AuditVerification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_seq, 1);
}

TEST_F(AuditLogTest, SwappingTwoEntriesIsDetectedAtTheFirstOfThem) {
  AppendFive();
  Exec("UPDATE audit_log SET seq = -2 WHERE seq = 2");
  Exec("UPDATE audit_log SET seq = 2 WHERE seq = 3");
  Exec("UPDATE audit_log SET seq = 3 WHERE seq = -2");
  AuditVerification v = MustVerify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.first_bad_seq, 2) << v.problem;
}

TEST_F(AuditLogTest, AppendInsideACallersTransactionRollsBackWithIt) {
  auto r = db_->Transact([&](store::Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(log_.Append(tx, {.tenant_id = "t", .actor = "system", .action = "x", .target = ""}));
    return FailedPreconditionError("state change failed");
  });
  ASSERT_FALSE(r);
  auto all = log_.Query({});
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
  ASSERT_TRUE(db_->Transact([&](store::Executor& tx) {
    return log_.Append(tx, {.tenant_id = "t", .actor = "system", .action = "x", .target = ""});
  }));
  AuditVerification v = MustVerify();
  EXPECT_TRUE(v.intact);
  EXPECT_EQ(v.n_entries, 1);
}

TEST(AuditLogConcurrency, EightThreadsAppendingKeepTheChainValid) {
  yunzhi::testing::TempDir tmp;
  store::DatabaseOptions options;
  options.url = tmp.path() + "/audit.db";
  options.max_connections = 8;
  auto db = store::Database::Open(options);
  ASSERT_TRUE(db) << db.error().ToString();
  ASSERT_TRUE(MigrateSchema(**db));
  AuditLog log(**db, *Clock::System());
  constexpr int kThreads = 8, kPerThread = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        AuditEvent e{.tenant_id = "ten_" + std::to_string(t),
                     .actor = "key_" + std::to_string(t),
                     .action = "search",
                     .target = std::to_string(i)};
        if (!log.Append(e)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto v = log.Verify();
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->intact) << v->problem;
  EXPECT_EQ(v->n_entries, kThreads * kPerThread);
  AuditFilter f;
  f.limit = 10000;
  auto all = log.Query(f);
  ASSERT_TRUE(all);
  std::set<std::string> seen;
  for (const auto& e : *all) seen.insert(e.tenant_id + "/" + e.target);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace yunzhi::platform
