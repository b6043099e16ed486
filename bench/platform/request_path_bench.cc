// The per-request work in front of every handler: route lookup, key authentication (cached),
// rate limiting. Run: build/bench/bench/platform/bench_request_path
#include <benchmark/benchmark.h>

#include "yunzhi/api/http.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/platform/api_keys.h"
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

}  // namespace
