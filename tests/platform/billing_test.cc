#include "yunzhi/platform/billing.h"

#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "store/store_test_util.h"
#include "yunzhi/platform/schema.h"

namespace yunzhi::platform {
namespace {

using store::testing::TempDir;

Money M(std::string_view s) { return Money::Parse(s).value(); }

constexpr int64_t kJan1 = 1767225600000;  // 2026-01-01T00:00:00Z
constexpr int64_t kDay = 86'400'000;
constexpr int64_t kFeb1 = kJan1 + 31 * kDay;
constexpr int64_t kMar1 = kFeb1 + 28 * kDay;

class BillingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::DatabaseOptions o;
    o.url = (dir_ / "y.db").string();
    auto db = store::Database::Open(o);
    ASSERT_TRUE(db.has_value());
    db_ = std::move(*db);
    ASSERT_TRUE(MigrateSchema(*db_));
  }
  std::unique_ptr<Billing> Make(BillingOptions options = {}) {
    return std::make_unique<Billing>(*db_, clock_, std::move(options));
  }
  void Record(UsageRecord r) {
    if (r.tenant_id.empty()) r.tenant_id = "ten_a";
    auto meter = Meter::Open(*db_, (dir_ / "usage.journal").string(), clock_);
    ASSERT_TRUE(meter.has_value());
    ASSERT_TRUE((*meter)->Record(std::move(r)));
  }
  TempDir dir_;
  FakeClock clock_{kJan1};
  std::unique_ptr<store::Database> db_;
};

UsageRecord Usage(std::string id, std::string_view kind, std::string model, int64_t time_ms) {
  UsageRecord r;
  r.request_id = std::move(id);
  r.kind = std::string(kind);
  r.model = std::move(model);
  r.time_ms = time_ms;
  return r;
}

TEST_F(BillingTest, PriceBookPicksTheMostSpecificPattern) {
  auto b = Make();
  Prices all{.pattern = "*", .input_per_1m = M("1")};
  Prices qwen{.pattern = "qwen-*", .input_per_1m = M("2")};
  Prices qwen7{.pattern = "qwen-7b-*", .input_per_1m = M("3")};
  Prices exact{.pattern = "qwen-7b-chat", .input_per_1m = M("4")};
  for (const auto& p : {all, qwen, qwen7, exact}) ASSERT_TRUE(b->SetPrices(p));
  EXPECT_EQ(b->PricesFor("llama")->input_per_1m, M("1"));
  EXPECT_EQ(b->PricesFor("qwen-14b")->input_per_1m, M("2"));
  EXPECT_EQ(b->PricesFor("qwen-7b-base")->input_per_1m, M("3"));
  EXPECT_EQ(b->PricesFor("qwen-7b-chat")->input_per_1m, M("4"));
  // Replacing keeps one row per pattern.
  exact.input_per_1m = M("5");
  ASSERT_TRUE(b->SetPrices(exact));
  EXPECT_EQ(b->PricesFor("qwen-7b-chat")->input_per_1m, M("5"));
  EXPECT_EQ(b->ListPrices()->size(), 4u);
  EXPECT_EQ(b->SetPrices(Prices{.pattern = "a*b"}).error().code, Code::kInvalidArgument);
  EXPECT_EQ(b->SetPrices(Prices{.pattern = "x", .output_per_1m = M("-1")}).error().code,
            Code::kInvalidArgument);
  ASSERT_TRUE(b->DeletePrices("*"));
  EXPECT_EQ(b->PricesFor("llama")->input_per_1m, Money());  // nothing matches: free
  EXPECT_EQ(b->DeletePrices("*").error().code, Code::kNotFound);
}

TEST_F(BillingTest, ChatCostSplitsCachedTokens) {
  Prices p{.pattern = "*", .input_per_1m = M("2"), .cached_input_per_1m = M("0.5"), .output_per_1m = M("8")};
  // 900 uncached × 2/1M + 100 cached × 0.5/1M + 50 × 8/1M = 0.0018 + 0.00005 + 0.0004
  EXPECT_EQ(Billing::ChatCost(p, 1000, 100, 50)->ToString(), "0.00225");
}

// Mixed plans over three months, against values computed by hand (see the comments).
TEST_F(BillingTest, StatementsForMixedPlansMatchHandComputedValues) {
  BillingOptions options;
  options.trial_credit = M("60");
  options.trial_days = 45;  // expires 2026-02-15: covers January and February
  auto b = Make(options);
  ASSERT_TRUE(b->TenantAccount("ten_a"));  // the trial is granted now (2026-01-01)
  ASSERT_TRUE(b->SetPrices({.pattern = "*",
                            .input_per_1m = M("1"),
                            .cached_input_per_1m = M("0.5"),
                            .output_per_1m = M("2"),
                            .storage_per_gb_month = M("0.1"),
                            .ocr_per_1k_pages = M("5")}));
  ASSERT_TRUE(b->SetPrices({.pattern = "big-*",
                            .input_per_1m = M("10"),
                            .cached_input_per_1m = M("2.5"),
                            .output_per_1m = M("30"),
                            .compute_per_hour = M("7.2"),
                            .throughput_per_1k_tpm_month = M("5")}));
  // January.
  UsageRecord r = Usage("c1", kUsageChatTokens, "small", kJan1 + 1);
  r.q = {.prompt_tokens = 1'000'000, .cached_prompt_tokens = 200'000, .completion_tokens = 500'000};
  Record(r);  // input 0.80, cached 0.10, output 1.00
  r = Usage("c2", kUsageChatTokens, "big-1", kJan1 + 2);
  r.q = {.prompt_tokens = 123'457, .completion_tokens = 10'001};
  Record(r);  // input 1.23457 → 1.23, output 0.30003 → 0.30
  r = Usage("c2", kUsageModelLoad, "big-1", kJan1 + 2);
  r.q.compute_ms = 1'800'000;
  Record(r);  // half an hour × 7.2 = 3.60
  r = Usage("d1", kUsageDocumentIngest, "", kJan1 + 3);
  r.q = {.bytes = 1000, .pages = 9, .ocr_pages = 7};
  Record(r);  // 7 × 5 / 1000 = 0.035 → 0.04
  r = Usage("s1", kUsageStorageSample, "", kJan1 + 4);
  r.q.byte_hours = int64_t{600} * 1'000'000'000 * 730;  // 600 GB for a month
  Record(r);  // 500 GB reserved (15% off): 42.50; 100 GB-month overage × 0.1 = 10.00
  ASSERT_TRUE(b->AddPlan("ten_a", kPlanStorageReserved, "", 500, kJan1, 1));
  // February: throughput reservation 2,000 TPM on big-* at 5 per 1k TPM-month = 10.00.
  ASSERT_TRUE(b->AddPlan("ten_a", kPlanThroughputReserved, "big-1", 2000, kFeb1, 1));
  r = Usage("c3", kUsageChatTokens, "small", kFeb1 + 10);
  r.q.prompt_tokens = 2'000'000;
  Record(r);  // 2.00
  // March: trial expired; storage at pay-as-you-go.
  r = Usage("c4", kUsageChatTokens, "small", kMar1);
  r.q.prompt_tokens = 1'000'000;
  Record(r);  // 1.00
  r = Usage("s2", kUsageStorageSample, "", kMar1 + 5);
  r.q.byte_hours = int64_t{3} * 1'000'000'000 * 730;
  Record(r);  // 3 GB-month × 0.1 = 0.30

  auto jan = b->MonthlyStatement("ten_a", "2026-01");
  ASSERT_TRUE(jan.has_value()) << jan.error().ToString();
  EXPECT_EQ(jan->subtotal.ToString(), "59.57");
  EXPECT_EQ(jan->trial_credit_applied.ToString(), "59.57");
  EXPECT_EQ(jan->total_due.ToString(), "0.00");
  EXPECT_EQ(jan->n_records, 5);
  EXPECT_EQ(jan->usage_totals.prompt_tokens, 1'123'457);
  EXPECT_EQ(jan->usage_totals.completion_tokens, 510'001);
  Money sum;
  for (const auto& l : jan->lines) sum += l.amount;
  EXPECT_EQ(sum, jan->subtotal);
  auto line = [&](const Statement& s, std::string_view kind, std::string_view model) {
    for (const auto& l : s.lines) {
      if (l.kind == kind && l.model == model) return l.amount.ToString();
    }
    return std::string("missing");
  };
  EXPECT_EQ(line(*jan, "input_tokens", "small"), "0.80");
  EXPECT_EQ(line(*jan, "cached_input_tokens", "small"), "0.10");
  EXPECT_EQ(line(*jan, "input_tokens", "big-1"), "1.23");
  EXPECT_EQ(line(*jan, "output_tokens", "big-1"), "0.30");
  EXPECT_EQ(line(*jan, "model_load_ms", "big-1"), "3.60");
  EXPECT_EQ(line(*jan, "ocr_pages", ""), "0.04");
  EXPECT_EQ(line(*jan, "storage_reserved", ""), "42.50");
  EXPECT_EQ(line(*jan, "storage_overage_byte_hours", ""), "10.00");

  auto feb = b->MonthlyStatement("ten_a", "2026-02");
  ASSERT_TRUE(feb.has_value());
  EXPECT_EQ(line(*feb, "throughput_reserved", "big-1"), "10.00");
  EXPECT_EQ(feb->subtotal.ToString(), "12.00");
  EXPECT_EQ(feb->trial_credit_applied.ToString(), "0.43");  // 60 - 59.57
  EXPECT_EQ(feb->total_due.ToString(), "11.57");

  auto mar = b->MonthlyStatement("ten_a", "2026-03");
  ASSERT_TRUE(mar.has_value());
  EXPECT_EQ(line(*mar, "storage_byte_hours", ""), "0.30");
  EXPECT_EQ(mar->subtotal.ToString(), "1.30");
  EXPECT_EQ(mar->trial_credit_applied.ToString(), "0.00");
  EXPECT_EQ(mar->total_due.ToString(), "1.30");

  const std::string csv = Billing::StatementCsv(*feb);
  EXPECT_NE(csv.find("throughput_reserved,big-1,2000,5.00,1000,10.00,CNY\r\n"), std::string::npos);
  EXPECT_NE(csv.find("total_due,,,,,11.57,CNY\r\n"), std::string::npos);
  EXPECT_EQ(b->MonthlyStatement("ten_a", "2026-13").error().code, Code::kInvalidArgument);
  EXPECT_EQ(b->MonthlyStatement("ten_a", "26-01").error().code, Code::kInvalidArgument);
}

// Prices are versioned: usage is priced with the book in effect when it happened. A price
// change in mid-month splits the line; deleting a pattern makes later usage free, not earlier.
TEST_F(BillingTest, StatementsPriceUsageAtTheTimeItHappened) {
  auto b = Make();
  ASSERT_TRUE(b->SetPrices({.pattern = "*", .input_per_1m = M("1"), .output_per_1m = M("2")}));
  UsageRecord r = Usage("c1", kUsageChatTokens, "m", kJan1 + kDay);
  r.q = {.prompt_tokens = 1'000'000, .completion_tokens = 1'000'000};
  Record(r);  // input 1.00, output 2.00
  clock_.SetUnixMs(kJan1 + 10 * kDay);
  ASSERT_TRUE(b->SetPrices({.pattern = "*", .input_per_1m = M("3"), .output_per_1m = M("2")}));
  r = Usage("c2", kUsageChatTokens, "m", kJan1 + 11 * kDay);
  r.q = {.prompt_tokens = 500'000, .completion_tokens = 500'000};
  Record(r);  // input 1.50 at the new price; output 1.00 at the unchanged one
  clock_.SetUnixMs(kJan1 + 20 * kDay);
  ASSERT_TRUE(b->SetPrices({.pattern = "m", .input_per_1m = M("0.5")}));
  ASSERT_TRUE(b->DeletePrices("m"));  // the same day: back to "*"
  ASSERT_TRUE(b->DeletePrices("*"));
  r = Usage("c3", kUsageChatTokens, "m", kJan1 + 21 * kDay);
  r.q = {.prompt_tokens = 7'000'000, .completion_tokens = 7'000'000};
  Record(r);  // free: no prices any more
  auto jan = b->MonthlyStatement("ten_a", "2026-01");
  ASSERT_TRUE(jan.has_value()) << jan.error().ToString();
  std::vector<std::string> lines;
  for (const auto& l : jan->lines) {
    lines.push_back(fmt::format("{} {} {} {}", l.kind, l.quantity, l.unit_price.ToString(), l.amount.ToString()));
  }
  EXPECT_EQ(lines, (std::vector<std::string>{"input_tokens 1000000 1.00 1.00",
                                             "input_tokens 500000 3.00 1.50",
                                             "input_tokens 7000000 0.00 0.00",
                                             "output_tokens 1500000 2.00 3.00",
                                             "output_tokens 7000000 0.00 0.00"}));
  EXPECT_EQ(jan->subtotal, M("5.5"));
  EXPECT_EQ(jan->usage_totals.prompt_tokens, 8'500'000);  // reconciles with every record
  // The current book and the history.
  EXPECT_TRUE(b->ListPrices()->empty());
  // "m" was set and deleted in the same millisecond: one version, the later change.
  EXPECT_EQ(b->PriceHistory()->size(), 4u);
}

// A post-paid spend limit is per calendar month; a prepaid balance is not.
TEST_F(BillingTest, PostpaidSpendLimitsRenewEachMonth) {
  auto b = Make();
  AccountUpdate u;
  u.mode = "postpaid";
  u.limit = std::optional<Money>(M("1"));
  ASSERT_TRUE(b->UpdateAccount("ten_a", "", u));
  ASSERT_TRUE(b->TopUp("ten_b", "", M("1")));
  for (const char* t : {"ten_a", "ten_b"}) {
    auto h = b->Reserve(t, "", M("1"));
    ASSERT_TRUE(h.has_value()) << t;
    ASSERT_TRUE(b->Commit(*b->Settle(*h, M("1"))));
    EXPECT_EQ(b->Reserve(t, "", M("0.01")).error().code, Code::kQuotaExceeded) << t;
  }
  EXPECT_EQ(b->TenantAccount("ten_a")->period, "2026-01");
  EXPECT_EQ(b->TenantAccount("ten_a")->period_used, M("1"));
  clock_.SetUnixMs(kFeb1 + 1);
  EXPECT_TRUE(b->Reserve("ten_a", "", M("1")).has_value());  // a new month
  EXPECT_EQ(b->Reserve("ten_b", "", M("0.01")).error().code, Code::kQuotaExceeded);  // prepaid: spent
  // The rows agree after a restart: January's spend stays January's.
  auto again = Make();
  auto a = again->TenantAccount("ten_a");
  EXPECT_EQ(a->used, M("1"));
  EXPECT_EQ(a->period, "2026-01");
  EXPECT_EQ(Billing::Available(*a, kFeb1 + 1), M("1"));
}

TEST_F(BillingTest, PlansValidateTiersAndTerms) {
  auto b = Make();
  EXPECT_EQ(b->AddPlan("ten_a", kPlanStorageReserved, "", 700, kJan1, 12).error().code,
            Code::kInvalidArgument);
  EXPECT_EQ(b->AddPlan("ten_a", kPlanStorageReserved, "", 500, kJan1, 0).error().code,
            Code::kInvalidArgument);
  EXPECT_EQ(b->AddPlan("ten_a", "gold", "", 500, kJan1, 1).error().code, Code::kInvalidArgument);
  EXPECT_EQ(b->AddPlan("ten_a", kPlanThroughputReserved, "", 500, kJan1, 1).error().code,
            Code::kInvalidArgument);
  auto pb = b->AddPlan("ten_a", kPlanStorageReserved, "", 1'000'000, kJan1, 12);
  ASSERT_TRUE(pb.has_value());
  EXPECT_EQ(pb->discount_bp, 7000);  // 1 PB: 70% below pay-as-you-go
  EXPECT_EQ(pb->end_ms, kJan1 + 365 * kDay);
  EXPECT_EQ(b->ListPlans("ten_a")->size(), 1u);
  ASSERT_TRUE(b->DeletePlan(pb->id));
  EXPECT_EQ(b->DeletePlan(pb->id).error().code, Code::kNotFound);
}

// A balance covering exactly K requests; 4K concurrent reservations: exactly K succeed and the
// balance never goes below zero.
TEST_F(BillingTest, ConcurrentReservationsNeverOverspend) {
  auto b = Make();
  constexpr int kK = 25;
  const Money cost = M("0.013");
  ASSERT_TRUE(b->TopUp("ten_a", "", Money::FromNanos(cost.nanos() * kK)));
  std::atomic<int> ok{0}, quota{0};
  std::vector<Hold> holds(4 * kK);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4 * kK; ++i) {
    threads.emplace_back([&, i] {
      auto h = b->Reserve("ten_a", "", cost);
      if (h) {
        holds[i] = *h;
        ++ok;
      } else if (h.error().code == Code::kQuotaExceeded) {
        EXPECT_EQ(h.error().detail, "insufficient_quota");
        EXPECT_NE(h.error().message.find("tenant's prepaid balance"), std::string::npos);
        ++quota;
      } else {
        ADD_FAILURE() << h.error().ToString();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kK);
  EXPECT_EQ(quota.load(), 3 * kK);
  auto a = b->TenantAccount("ten_a");
  EXPECT_EQ(a->reserved, Money::FromNanos(cost.nanos() * kK));
  EXPECT_GE(*a->limit - a->used - a->reserved, Money());
  // Settling at half the cost frees the rest: more requests fit again.
  for (const auto& h : holds) {
    if (!h.tenant_id.empty()) {
      ASSERT_TRUE(b->Settle(h, M("0.0065")));
    }
  }
  a = b->TenantAccount("ten_a");
  EXPECT_EQ(a->reserved, Money());
  EXPECT_EQ(a->used, Money::FromNanos(6'500'000 * kK));
  EXPECT_TRUE(b->Reserve("ten_a", "", cost));
}

TEST_F(BillingTest, KeySpendLimitTrialAndUnlimitedTenants) {
  BillingOptions options;
  options.trial_credit = M("1");
  auto b = Make(options);
  // No limit: pay-as-you-go, unlimited.
  EXPECT_TRUE(b->Reserve("ten_free", "key_x", M("1000000")));
  // A post-paid tenant with a spend limit of 0.5 and a trial credit of 1: 1.5 available.
  AccountUpdate u;
  u.limit = std::optional<Money>(M("0.5"));
  ASSERT_TRUE(b->UpdateAccount("ten_a", "", u));
  auto h1 = b->Reserve("ten_a", "", M("1.2"));
  ASSERT_TRUE(h1.has_value());
  auto h2 = b->Reserve("ten_a", "", M("0.4"));
  ASSERT_FALSE(h2.has_value());
  EXPECT_NE(h2.error().message.find("trial credit and monthly spend limit"), std::string::npos);
  ASSERT_TRUE(b->Settle(*h1, M("1.2")));  // 1.0 from the trial, then 0.2
  auto a = b->TenantAccount("ten_a");
  EXPECT_EQ(a->trial_used, M("1"));
  EXPECT_EQ(a->used, M("0.2"));
  // A key limit of 0.1 binds before the tenant's.
  AccountUpdate k;
  k.limit = std::optional<Money>(M("0.1"));
  ASSERT_TRUE(b->UpdateAccount("ten_a", "key_1", k));
  auto h3 = b->Reserve("ten_a", "key_1", M("0.2"));
  ASSERT_FALSE(h3.has_value());
  EXPECT_EQ(h3.error().code, Code::kQuotaExceeded);
  EXPECT_NE(h3.error().message.find("API key's monthly spend limit"), std::string::npos);
  auto h4 = b->Reserve("ten_a", "key_1", M("0.1"));
  ASSERT_TRUE(h4.has_value());
  ASSERT_TRUE(b->Settle(*h4, M("0.05")));
  EXPECT_EQ(b->KeyAccount("key_1")->value().used, M("0.05"));
  EXPECT_EQ(b->TenantAccount("ten_a")->used, M("0.25"));
  // The trial expires: only the limit counts.
  EXPECT_EQ(b->TopUp("ten_a", "", M("0")).error().code, Code::kInvalidArgument);
}

// The ledger is in memory; what reaches the database is the charges (with their usage records
// through the meter, or Commit). A later process sees every committed charge and no reservation
// of requests that died with the earlier one.
TEST_F(BillingTest, ChargesReachTheDatabaseOnceAndReservationsDieWithTheProcess) {
  BillingOptions options;
  options.trial_credit = M("1");
  MeterOptions mo;
  mo.apply_charge = &Billing::ApplyCharge;
  {
    auto b = Make(options);
    ASSERT_TRUE(b->TopUp("ten_a", "", M("10")));
    AccountUpdate k;
    k.limit = std::optional<Money>(M("5"));
    ASSERT_TRUE(b->UpdateAccount("ten_a", "key_1", k));
    auto meter = Meter::Open(*db_, (dir_ / "usage.journal").string(), clock_, mo);
    ASSERT_TRUE(meter.has_value());
    auto h1 = b->Reserve("ten_a", "key_1", M("2"));
    ASSERT_TRUE(h1.has_value());
    auto c1 = b->Settle(*h1, M("1.5"));  // 1.0 from the trial, 0.5 from the balance
    ASSERT_TRUE(c1.has_value());
    EXPECT_EQ(c1->amount_nanos, M("1.5").nanos());
    EXPECT_EQ(c1->from_trial_nanos, M("1").nanos());
    UsageRecord r = Usage("chatcmpl-1", kUsageChatTokens, "m", kJan1);
    r.tenant_id = "ten_a";
    r.key_id = "key_1";
    ASSERT_TRUE((*meter)->Record(r, *c1));
    ASSERT_TRUE((*meter)->Record(r, *c1));  // the same record again: not charged twice
    auto h2 = b->Reserve("ten_a", "", M("0.25"));
    ASSERT_TRUE(h2.has_value());
    auto c2 = b->Settle(*h2, M("0.25"));
    ASSERT_TRUE(c2.has_value());
    ASSERT_TRUE(b->Commit(*c2));  // without a meter
    // Still running when the process "dies": held, never charged.
    ASSERT_TRUE(b->Reserve("ten_a", "key_1", M("3")));
    auto a = b->TenantAccount("ten_a");
    EXPECT_EQ(a->trial_used, M("1"));
    EXPECT_EQ(a->used, M("0.75"));
    EXPECT_EQ(a->reserved, M("3"));
  }
  auto b = Make(options);
  auto a = b->TenantAccount("ten_a");
  EXPECT_EQ(a->trial_used, M("1"));
  EXPECT_EQ(a->used, M("0.75"));
  EXPECT_EQ(a->reserved, Money());
  EXPECT_EQ(b->KeyAccount("key_1")->value().used, M("1.5"));
  EXPECT_EQ(b->KeyAccount("key_1")->value().reserved, Money());
  // 10 top-up + 0 trial left - 0.75 used: 9.25 available, not a nanounit more.
  EXPECT_FALSE(b->Reserve("ten_a", "", M("9.250000001")).has_value());
  EXPECT_TRUE(b->Reserve("ten_a", "", M("9.25")).has_value());
}

// Settings changed by another process (the CLI, a second Billing object) show within the
// ledger's refresh interval; changes through this object show at once.
TEST_F(BillingTest, LedgerPicksUpSettingsChangedElsewhere) {
  auto server = Make();
  auto admin = Make();
  ASSERT_TRUE(server->TopUp("ten_a", "", M("1")));
  EXPECT_FALSE(server->Reserve("ten_a", "", M("2")).has_value());
  ASSERT_TRUE(admin->TopUp("ten_a", "", M("5")));  // limit 6 in the database
  EXPECT_FALSE(server->Reserve("ten_a", "", M("2")).has_value());  // not yet seen
  clock_.Advance(std::chrono::seconds(6));
  auto h = server->Reserve("ten_a", "", M("2"));
  ASSERT_TRUE(h.has_value()) << h.error().ToString();
  EXPECT_EQ(server->TenantAccount("ten_a")->limit, M("6"));
  EXPECT_EQ(server->TenantAccount("ten_a")->reserved, M("2"));
}

TEST_F(BillingTest, TokensPerMinuteLimits) {
  auto b = Make();
  AccountUpdate u;
  u.tokens_per_minute = std::optional<int64_t>(100);
  ASSERT_TRUE(b->UpdateAccount("ten_a", "key_1", u));
  EXPECT_TRUE(b->Reserve("ten_a", "key_1", Money(), 60));
  auto r = b->Reserve("ten_a", "key_1", Money(), 60);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Code::kResourceExhausted);
  EXPECT_EQ(r.error().detail, "rate_limit_exceeded");
  EXPECT_TRUE(b->Reserve("ten_a", "key_2", Money(), 60));  // other keys are not affected
  clock_.Advance(std::chrono::minutes(1));
  EXPECT_TRUE(b->Reserve("ten_a", "key_1", Money(), 60));
  u.tokens_per_minute = std::optional<int64_t>(-5);
  EXPECT_EQ(b->UpdateAccount("ten_a", "", u).error().code, Code::kInvalidArgument);
}

TEST_F(BillingTest, ReservedThroughputGivesPriorityUpToItsRate) {
  auto b = Make();
  // No plan: best effort.
  EXPECT_FALSE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 10));
  ASSERT_TRUE(b->AddPlan("ten_a", kPlanThroughputReserved, "qwen/*", 100, kJan1, 1));
  EXPECT_TRUE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 60));
  EXPECT_TRUE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 40));
  EXPECT_FALSE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 1));  // over the rate
  EXPECT_FALSE(b->TakeReservedThroughput("ten_a", "llama/llama-3", 1));    // another model
  EXPECT_FALSE(b->TakeReservedThroughput("ten_b", "qwen/qwen2.5-7b", 1));  // another tenant
  clock_.Advance(std::chrono::minutes(1));
  EXPECT_TRUE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 100));  // a new minute
  // After the term the plan no longer applies.
  clock_.Advance(std::chrono::hours(24 * 62));
  EXPECT_FALSE(b->TakeReservedThroughput("ten_a", "qwen/qwen2.5-7b", 1));
}

TEST_F(BillingTest, StorageQuota) {
  BillingOptions options;
  options.stored_bytes = [](std::string_view) -> Result<int64_t> { return 900; };
  auto b = Make(options);
  EXPECT_TRUE(b->CheckStorageQuota("ten_a", 1'000'000));  // no quota yet
  AccountUpdate u;
  u.storage_quota_bytes = std::optional<int64_t>(1000);
  ASSERT_TRUE(b->UpdateAccount("ten_a", "", u));
  EXPECT_TRUE(b->CheckStorageQuota("ten_a", 100));
  auto s = b->CheckStorageQuota("ten_a", 101);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Code::kPayloadTooLarge);
  EXPECT_NE(s.error().message.find("storage quota of 1000 bytes"), std::string::npos);
  EXPECT_EQ(b->CheckStorageQuota("ten_a", -1).error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace yunzhi::platform
