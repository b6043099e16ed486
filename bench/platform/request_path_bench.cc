// The per-request work in front of every handler: route lookup, key authentication (cached),
// rate limiting; and behind an inference request: budget reservation, settlement, usage record.
// Run: build/bench/bench/platform/bench_request_path
#include <benchmark/benchmark.h>

#include "yunzhi/api/http.h"
#include "yunzhi/base/clock.h"
#include <filesystem>

#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/audit.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/database.h"

namespace {
using namespace yunzhi;

void BM_RouterFind(benchmark::State& state) {
  api::Router router;
  for (const char* p : {"/healthz", "/readyz", "/metrics", "/v1/models", "/api/me", "/api/tenants",
                        "/api/tenants/{id}", "/api/keys", "/api/keys/{id}"}) {
    router.Add("GET", p, [](api::HttpRequest&) { return api::HttpResponse{}; });
  }
  for (auto _ : state) benchmark::DoNotOptimize(router.Find("GET", "/api/keys/key_123"));
}
BENCHMARK(BM_RouterFind);

void BM_AuthenticateCached(benchmark::State& state) {
  auto db = store::Database::Open({":memory:"});
  (void)platform::MigrateSchema(**db);
  platform::Tenants tenants(**db, *Clock::System());
  platform::ApiKeys keys(**db, tenants, *Clock::System());
  auto t = tenants.Create("bench");
  auto k = keys.Create(t->id, {});
  for (auto _ : state) benchmark::DoNotOptimize(keys.Authenticate(k->secret));
}
BENCHMARK(BM_AuthenticateCached)->Threads(1)->Threads(2);

void BM_RateLimiterAcquire(benchmark::State& state) {
  static platform::RateLimiter limiter(*Clock::System());
  for (auto _ : state) benchmark::DoNotOptimize(limiter.Acquire("key", 1'000'000'000));
}
BENCHMARK(BM_RateLimiterAcquire)->Threads(1)->Threads(2);

// One inference request's billing in the ledger: price lookup, reservation of the maximum cost
// for a prepaid tenant and key, settlement of the real cost. No disk.
void BM_ReserveSettle(benchmark::State& state) {
  static auto db = store::Database::Open({":memory:"});
  static bool migrated = platform::MigrateSchema(**db).has_value();
  static platform::Billing billing(**db, *Clock::System(), {});
  static bool setup = [] {
    platform::Prices p;
    p.pattern = "*";
    p.input_per_1m = platform::Money::Units(1);
    p.output_per_1m = platform::Money::Units(2);
    return billing.SetPrices(p).has_value() &&
           billing.TopUp("ten_bench", "", platform::Money::Units(1'000'000'000)).has_value();
  }();
  (void)migrated;
  (void)setup;
  for (auto _ : state) {
    auto prices = billing.PricesFor("bench/stories");
    auto cost = platform::Billing::ChatCost(*prices, 5, 0, 1);
    auto hold = billing.Reserve("ten_bench", "key_bench", *cost, 6);
    benchmark::DoNotOptimize(billing.Settle(*hold, *cost));
  }
}
BENCHMARK(BM_ReserveSettle)->Threads(1)->Threads(2);

// Usage records submitted from the request path (journal line + hand-off), including the writer
// thread's work: the timer stops only when everything submitted is in the database.
void BM_MeterSubmit(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "yunzhi-bench-meter";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  store::DatabaseOptions o;
  o.url = (dir / "y.db").string();
  auto db = store::Database::Open(o);
  (void)platform::MigrateSchema(**db);
  platform::MeterOptions mo;
  mo.apply_charge = &platform::Billing::ApplyCharge;
  auto meter = platform::Meter::Open(**db, (dir / "usage.journal").string(), *Clock::System(), mo);
  int64_t i = 0;
  for (auto _ : state) {
    platform::UsageRecord r;
    r.request_id = "cmpl-" + std::to_string(i++);
    r.kind = std::string(platform::kUsageChatTokens);
    r.tenant_id = "ten_bench";
    r.key_id = "key_bench";
    r.model = "bench/stories";
    r.q.prompt_tokens = 5;
    r.q.completion_tokens = 1;
    benchmark::DoNotOptimize((*meter)->Submit(std::move(r), platform::UsageCharge{"ten_bench", "key_bench", 9000, 0}));
  }
  (void)(*meter)->Flush();
  state.SetItemsProcessed(state.iterations());
  meter->reset();
  db->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_MeterSubmit)->UseRealTime();

// One audit entry (a search, a derived-model answer): a write transaction on the platform
// database, on a file as in the server.
void BM_AuditAppend(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "yunzhi-bench-audit";
  if (state.thread_index() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  static std::unique_ptr<store::Database> db;
  static std::unique_ptr<platform::AuditLog> audit;
  if (state.thread_index() == 0) {
    store::DatabaseOptions o;
    o.url = (dir / "y.db").string();
    db = std::move(*store::Database::Open(o));
    (void)platform::MigrateSchema(*db);
    audit = std::make_unique<platform::AuditLog>(*db, *Clock::System());
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(audit->Append({.tenant_id = "ten_bench",
                                            .actor = "key_bench",
                                            .action = "search",
                                            .target = "ks_bench",
                                            .details_json = R"({"documents":["doc_1","doc_2"]})"}));
  }
  if (state.thread_index() == 0) {
    audit.reset();
    db.reset();
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_AuditAppend)->Threads(1)->UseRealTime();

}  // namespace
