#include "yunzhi/platform/metering.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "store/store_test_util.h"
#include "yunzhi/platform/schema.h"

namespace yunzhi::platform {
namespace {

using store::testing::ReadFile;
using store::testing::TempDir;

std::unique_ptr<store::Database> OpenDb(const std::string& path) {
  store::DatabaseOptions o;
  o.url = path;
  auto db = store::Database::Open(o);
  EXPECT_TRUE(db.has_value()) << db.error().ToString();
  EXPECT_TRUE(MigrateSchema(**db).has_value());
  return std::move(*db);
}

UsageRecord Chat(std::string id, int64_t prompt, int64_t completion, int64_t time_ms,
                 std::string model = "m1", std::string key = "key_a") {
  UsageRecord r;
  r.request_id = std::move(id);
  r.kind = std::string(kUsageChatTokens);
  r.tenant_id = "ten_a";
  r.key_id = std::move(key);
  r.model = std::move(model);
  r.q.prompt_tokens = prompt;
  r.q.completion_tokens = completion;
  r.time_ms = time_ms;
  return r;
}

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z

TEST(Meter, RecordIsIdempotentByRequestAndKind) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  FakeClock clock;
  auto meter = Meter::Open(*db, (dir / "usage.journal").string(), clock);
  ASSERT_TRUE(meter.has_value()) << meter.error().ToString();
  ASSERT_TRUE((*meter)->Record(Chat("chatcmpl-1", 10, 5, kT0)));
  ASSERT_TRUE((*meter)->Record(Chat("chatcmpl-1", 10, 5, kT0)));
  UsageRecord load = Chat("chatcmpl-1", 0, 0, kT0);
  load.kind = std::string(kUsageModelLoad);
  load.q.compute_ms = 1234;
  ASSERT_TRUE((*meter)->Record(load));
  auto all = (*meter)->List("ten_a", 0, INT64_MAX);
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0], Chat("chatcmpl-1", 10, 5, kT0));
  // Everything committed: the journal is empty again.
  EXPECT_EQ(ReadFile(dir / "usage.journal"), "");
}

TEST(Meter, RejectsBadRecords) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  auto meter = Meter::Open(*db, (dir / "usage.journal").string());
  ASSERT_TRUE(meter.has_value());
  UsageRecord r = Chat("x", 1, 1, kT0);
  r.kind = "gpu_minutes";
  EXPECT_EQ((*meter)->Record(r).error().code, Code::kInvalidArgument);
  r = Chat("", 1, 1, kT0);
  EXPECT_EQ((*meter)->Record(r).error().code, Code::kInvalidArgument);
  r = Chat("x", -1, 1, kT0);
  EXPECT_EQ((*meter)->Record(r).error().code, Code::kInvalidArgument);
  r = Chat("x", 1, 1, kT0);
  r.q.cached_prompt_tokens = 2;
  EXPECT_EQ((*meter)->Record(r).error().code, Code::kInvalidArgument);
  r.tenant_id.clear();
  EXPECT_EQ((*meter)->Record(r).error().code, Code::kInvalidArgument);
}

TEST(Meter, JsonLineRoundTrips) {
  UsageRecord r = Chat("chatcmpl-\"q\"", 7, 3, kT0, "org/model,1");
  r.q.cached_prompt_tokens = 4;
  r.q.bytes = 1;
  r.q.pages = 2;
  r.q.ocr_pages = 3;
  r.q.byte_hours = 4;
  r.q.compute_ms = 5;
  r.base_model = "base\\path\n\t\x01 模型";
  auto back = Meter::FromJsonLine(Meter::ToJsonLine(r));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(Meter::ToJsonLine(r).find('\n'), std::string::npos);  // one line per record
  // With a charge.
  const UsageCharge charge{"ten_\"a", "key_1", 12'345, 345};
  std::optional<UsageCharge> charge_back;
  auto with = Meter::FromJsonLine(Meter::ToJsonLine(r, &charge), &charge_back);
  ASSERT_TRUE(with.has_value()) << with.error().ToString();
  EXPECT_EQ(*with, r);
  ASSERT_TRUE(charge_back.has_value());
  EXPECT_EQ(*charge_back, charge);
  // A charge that takes more from the trial than it charges is refused.
  const UsageCharge bad{"ten_a", "", 1, 2};
  EXPECT_FALSE(Meter::FromJsonLine(Meter::ToJsonLine(r, &bad)).has_value());
  EXPECT_EQ(*back, r);
  EXPECT_FALSE(Meter::FromJsonLine("{\"request_id\":\"x\"").has_value());
  EXPECT_FALSE(Meter::FromJsonLine("{\"request_id\":1}").has_value());
}

TEST(Meter, ReplaysAJournalLeftByACrashOnce) {
  TempDir dir;
  const std::string journal = (dir / "usage.journal").string();
  {
    // A previous process journaled two records (one of them also committed) and a torn line.
    auto db = OpenDb((dir / "y.db").string());
    ASSERT_TRUE(Meter::Open(*db, journal).has_value());
    auto meter = Meter::Open(*db, journal);
    ASSERT_TRUE((*meter)->Record(Chat("a", 1, 1, kT0)));
  }
  store::testing::WriteFile(dir / "usage.journal", Meter::ToJsonLine(Chat("a", 1, 1, kT0)) + "\n" +
                                                       Meter::ToJsonLine(Chat("b", 2, 2, kT0)) + "\n" +
                                                       "{\"request_id\":\"c\",\"ki");
  auto db = OpenDb((dir / "y.db").string());
  auto meter = Meter::Open(*db, journal);
  ASSERT_TRUE(meter.has_value()) << meter.error().ToString();
  auto all = (*meter)->List("", 0, INT64_MAX);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].request_id, "a");
  EXPECT_EQ((*all)[1].request_id, "b");
  EXPECT_EQ(ReadFile(dir / "usage.journal"), "");
}

// In a child process (kill -9 equivalent): opens the meter, records "chatcmpl-crash" with
// `charge` and dies with 137 between the journal sync and the database insert. Returns the
// child's exit code.
int CrashAfterJournal(const std::string& db_path, const std::string& journal, MeterOptions options,
                      std::optional<UsageCharge> charge) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    store::DatabaseOptions o;
    o.url = db_path;
    auto db = store::Database::Open(o);
    if (!db) ::_exit(2);
    auto meter = Meter::Open(**db, journal, *Clock::System(), std::move(options));
    if (!meter) ::_exit(3);
    ::setenv("YUNZHI_FAULT", "usage_after_journal", 1);
    (void)(*meter)->Record(Chat("chatcmpl-crash", 11, 22, kT0), std::move(charge));
    ::_exit(0);  // not reached: the fault point exits with 137
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// kill -9 equivalent between the journal fsync and the database insert: the child process dies
// with 137 before inserting; after "restart" the record is there exactly once.
TEST(Meter, FaultAfterJournalLosesNothingAndDuplicatesNothing) {
  TempDir dir;
  const std::string db_path = (dir / "y.db").string();
  const std::string journal = (dir / "usage.journal").string();
  { OpenDb(db_path); }  // schema first, in this process, before forking
  ASSERT_EQ(CrashAfterJournal(db_path, journal, {}, std::nullopt), 137);
  auto db = OpenDb(db_path);
  // Not in the database yet: only in the journal.
  auto before = Meter::ListFrom(*db, "", 0, INT64_MAX);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->size(), 0u);
  EXPECT_NE(ReadFile(dir / "usage.journal").find("chatcmpl-crash"), std::string::npos);
  for (int restart = 0; restart < 2; ++restart) {
    auto meter = Meter::Open(*db, journal);
    ASSERT_TRUE(meter.has_value());
    // A client retry of the same request after the restart is still one record.
    ASSERT_TRUE((*meter)->Record(Chat("chatcmpl-crash", 11, 22, kT0)));
    auto after = (*meter)->List("ten_a", 0, INT64_MAX);
    ASSERT_EQ(after->size(), 1u);
    EXPECT_EQ((*after)[0].q.completion_tokens, 22);
  }
}

// An account row for tenant "ten_a", and meter options that add each applied charge to its
// used_nanos (what billing's ApplyCharge does, minus the trial and the month).
void AddAccount(store::Database& db) {
  ASSERT_TRUE(db.Execute("INSERT INTO billing_accounts (id, tenant_id, is_key, mode, created_at_ms) "
                         "VALUES ('ten_a', 'ten_a', 0, 'postpaid', 0)"));
}
MeterOptions ChargesToUsed() {
  MeterOptions mo;
  mo.apply_charge = [](store::Executor& tx, const UsageCharge& c) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute("UPDATE billing_accounts SET used_nanos = used_nanos + ? WHERE id = ?",
                                  {c.amount_nanos, c.tenant_id}));
    return OkStatus();
  };
  return mo;
}

// A charge journaled with its record is applied once: by the writer, or by the replay after a
// crash between the journal and the database -- never by both, never twice.
TEST(Meter, ChargesAreAppliedOnceAcrossACrash) {
  TempDir dir;
  const std::string db_path = (dir / "y.db").string();
  const std::string journal = (dir / "usage.journal").string();
  {
    auto db = OpenDb(db_path);
    AddAccount(*db);
  }
  const MeterOptions mo = ChargesToUsed();
  const UsageCharge charge{"ten_a", "", 7'000, 0};
  ASSERT_EQ(CrashAfterJournal(db_path, journal, mo, charge), 137);
  auto db = OpenDb(db_path);
  auto used = [&] { return db->QueryOne("SELECT used_nanos FROM billing_accounts WHERE id = 'ten_a'")->value().Int(0); };
  EXPECT_EQ(used(), 0);
  for (int restart = 0; restart < 2; ++restart) {
    auto meter = Meter::Open(*db, journal, *Clock::System(), mo);
    ASSERT_TRUE(meter.has_value());
    // The replay charged the crashed record once; each earlier round added one more.
    EXPECT_EQ(used(), 7'000 * (1 + restart));
    // A retry of the same record with its charge: still one record, one charge.
    ASSERT_TRUE((*meter)->Record(Chat("chatcmpl-crash", 11, 22, kT0), charge));
    EXPECT_EQ(used(), 7'000 * (1 + restart));
    ASSERT_TRUE((*meter)->Record(Chat(fmt::format("chatcmpl-next-{}", restart), 1, 1, kT0), charge));
    EXPECT_EQ(used(), 7'000 * (2 + restart));
  }
}

// Submit returns before the database has the record; Flush waits for it. Many threads at once
// end up as one row each.
TEST(Meter, SubmitFromManyThreadsThenFlush) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  AddAccount(*db);
  // Charges are summed per account within a batch: the total must still be exact.
  auto meter = Meter::Open(*db, (dir / "usage.journal").string(), *Clock::System(), ChargesToUsed());
  ASSERT_TRUE(meter.has_value());
  constexpr int kThreads = 8, kEach = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        // Every tenth record is a duplicate of the one before it.
        const int id = i % 10 == 9 ? i - 1 : i;
        EXPECT_TRUE((*meter)->Submit(Chat(fmt::format("r{}-{}", t, id), 1, 2, kT0),
                                     UsageCharge{"ten_a", "", 1'000, 0, "2026-01"}));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE((*meter)->Flush());
  auto all = (*meter)->List("", 0, INT64_MAX);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->size(), static_cast<size_t>(kThreads * kEach * 9 / 10));
  EXPECT_EQ(db->QueryOne("SELECT used_nanos FROM billing_accounts")->value().Int(0),
            int64_t{1'000} * kThreads * kEach * 9 / 10);  // duplicates charged nothing
  EXPECT_EQ(ReadFile(dir / "usage.journal"), "");
}

TEST(Meter, StorageHoursAreIdempotentPerHour) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  auto meter = Meter::Open(*db, (dir / "usage.journal").string());
  ASSERT_TRUE(meter.has_value());
  const int64_t hour = kT0 / 3'600'000;
  ASSERT_TRUE(RecordStorageHour(**meter, "ten_a", 5'000, hour));
  ASSERT_TRUE(RecordStorageHour(**meter, "ten_a", 7'000, hour));  // a restart in the same hour
  ASSERT_TRUE(RecordStorageHour(**meter, "ten_a", 7'000, hour + 1));
  auto groups = Meter::Aggregate(*db, {.tenant_id = "ten_a", .group_by = "day"});
  ASSERT_TRUE(groups.has_value());
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].kind, "storage_sample");
  EXPECT_EQ((*groups)[0].n_records, 2);
  EXPECT_EQ((*groups)[0].q.byte_hours, 12'000);
}

TEST(Meter, ConcurrentRecordsAllLandOnce) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  auto meter = Meter::Open(*db, (dir / "usage.journal").string());
  ASSERT_TRUE(meter.has_value());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        // Every record twice: idempotence under concurrency.
        const std::string id = "r" + std::to_string(i) + "-" + std::to_string(t % 4);
        EXPECT_TRUE((*meter)->Record(Chat(id, 1, 1, kT0)));
      }
    });
  }
  for (auto& th : threads) th.join();
  auto all = (*meter)->List("", 0, INT64_MAX);
  EXPECT_EQ(all->size(), 100u);
  EXPECT_EQ(ReadFile(dir / "usage.journal"), "");
}

TEST(Meter, AggregatesByDayModelAndKeyWithCsv) {
  TempDir dir;
  auto db = OpenDb((dir / "y.db").string());
  auto meter = Meter::Open(*db, (dir / "usage.journal").string());
  ASSERT_TRUE(meter.has_value());
  ASSERT_TRUE((*meter)->Record(Chat("1", 10, 1, kT0 + 5, "m1", "key_a")));
  ASSERT_TRUE((*meter)->Record(Chat("2", 20, 2, kT0 + kDay - 1, "m2", "key_b")));
  ASSERT_TRUE((*meter)->Record(Chat("3", 40, 4, kT0 + kDay, "m1", "key_b")));
  UsageRecord other = Chat("4", 1000, 1000, kT0, "m1");
  other.tenant_id = "ten_other";
  ASSERT_TRUE((*meter)->Record(other));

  UsageQuery q{.tenant_id = "ten_a", .from_ms = kT0, .to_ms = kT0 + 2 * kDay, .group_by = "day"};
  auto days = Meter::Aggregate(*db, q);
  ASSERT_TRUE(days.has_value());
  ASSERT_EQ(days->size(), 2u);
  EXPECT_EQ((*days)[0].group, "2026-01-01");
  EXPECT_EQ((*days)[0].q.prompt_tokens, 30);
  EXPECT_EQ((*days)[0].n_records, 2);
  EXPECT_EQ((*days)[1].group, "2026-01-02");
  EXPECT_EQ((*days)[1].q.completion_tokens, 4);

  q.group_by = "model";
  auto models = Meter::Aggregate(*db, q);
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].group, "m1");
  EXPECT_EQ((*models)[0].q.prompt_tokens, 50);
  q.group_by = "key";
  q.to_ms = kT0 + kDay;  // exclusive: record 3 falls out
  auto keys = Meter::Aggregate(*db, q);
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[1].group, "key_b");
  EXPECT_EQ((*keys)[1].q.prompt_tokens, 20);
  EXPECT_EQ(Meter::GroupsCsv(*keys, "key"),
            "key,kind,records,prompt_tokens,cached_prompt_tokens,completion_tokens,bytes,pages,"
            "ocr_pages,byte_hours,compute_ms\r\n"
            "key_a,chat_tokens,1,10,0,1,0,0,0,0,0\r\n"
            "key_b,chat_tokens,1,20,0,2,0,0,0,0,0\r\n");
  q.group_by = "hour";
  EXPECT_EQ(Meter::Aggregate(*db, q).error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace yunzhi::platform
