// The usage and billing routes through the router with real keys and a real SQLite file; no
// sockets. Usage grouping and CSV, permissions, prices, top-ups, limits, plans, statements.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "yunzhi/api/app.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"

#include "support/process.h"

#include "api/route_call.h"

namespace yunzhi::api {
namespace {

namespace json = boost::json;
using platform::Scope;
using platform::Scopes;

constexpr int64_t kJan1 = 1767225600000;  // 2026-01-01T00:00:00Z
constexpr int64_t kDay = 86'400'000;

using Reply = testing::RouteReply;

class BillingRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::DatabaseOptions options;
    options.url = tmp_.path() + "/y.db";
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(platform::MigrateSchema(*db_));
    tenants_ = std::make_unique<platform::Tenants>(*db_, clock_);
    keys_ = std::make_unique<platform::ApiKeys>(*db_, *tenants_, clock_);
    limiter_ = std::make_unique<platform::RateLimiter>(clock_);
    auto system = tenants_->EnsureSystem();
    ASSERT_TRUE(system);
    auto acme = tenants_->Create("acme");
    ASSERT_TRUE(acme);
    acme_ = acme->id;
    auto other = tenants_->Create("other");
    ASSERT_TRUE(other);
    other_ = other->id;
    admin_key_ = Key(system->id, {Scope::kAdmin});
    acme_admin_ = Key(acme_, {Scope::kAdmin}, &acme_admin_id_);
    acme_read_ = Key(acme_, {Scope::kInference}, &acme_read_id_);
    other_read_ = Key(other_, {Scope::kRead});
    auto meter = platform::Meter::Open(*db_, tmp_.path() + "/usage.journal", clock_);
    ASSERT_TRUE(meter);
    meter_ = std::move(*meter);
    billing_ = std::make_unique<platform::Billing>(*db_, clock_, platform::BillingOptions{});
    ctx_.db = db_.get();
    ctx_.tenants = tenants_.get();
    ctx_.keys = keys_.get();
    ctx_.limiter = limiter_.get();
    ctx_.metrics = &metrics_;
    ctx_.draining = &draining_;
    ctx_.meter = meter_.get();
    ctx_.billing = billing_.get();
    RegisterRoutes(router_, ctx_);
  }

  std::string Key(const std::string& tenant_id, std::initializer_list<Scope> scopes,
                  std::string* id = nullptr) {
    platform::KeyOptions o;
    o.scopes = Scopes::Of(scopes);
    auto k = keys_->Create(tenant_id, o);
    EXPECT_TRUE(k) << k.error().ToString();
    if (id != nullptr && k) *id = k->key.id;
    return k ? k->secret : "";
  }

  Reply Call(const std::string& method, const std::string& target, const std::string& key,
             const json::value& body = nullptr) {
    return testing::CallRoute(router_, method, target, key, body.is_null() ? "" : json::serialize(body));
  }

  void Record(std::string id, std::string tenant, std::string key, std::string model, int64_t prompt,
              int64_t completion, int64_t time_ms) {
    platform::UsageRecord r;
    r.request_id = std::move(id);
    r.kind = std::string(platform::kUsageChatTokens);
    r.tenant_id = std::move(tenant);
    r.key_id = std::move(key);
    r.model = std::move(model);
    r.q.prompt_tokens = prompt;
    r.q.completion_tokens = completion;
    r.time_ms = time_ms;
    ASSERT_TRUE(meter_->Record(r));
  }

  testing::TempDir tmp_;
  FakeClock clock_{kJan1 + 40 * kDay};
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<platform::Tenants> tenants_;
  std::unique_ptr<platform::ApiKeys> keys_;
  std::unique_ptr<platform::RateLimiter> limiter_;
  std::unique_ptr<platform::Meter> meter_;
  std::unique_ptr<platform::Billing> billing_;
  metrics::Registry metrics_;
  std::atomic<bool> draining_{false};
  AppContext ctx_;
  Router router_;
  std::string acme_, other_, admin_key_, acme_admin_, acme_admin_id_, acme_read_, acme_read_id_, other_read_;
};

TEST_F(BillingRoutesTest, UsageGroupsByDayModelAndKeyForOwnTenantOnly) {
  Record("a", acme_, acme_read_id_, "m1", 10, 1, kJan1 + 1);
  Record("b", acme_, acme_admin_id_, "m2", 20, 2, kJan1 + kDay + 1);
  Record("c", acme_, acme_read_id_, "m1", 40, 4, kJan1 + 2 * kDay + 1);
  Record("d", other_, "key_x", "m1", 1000, 1000, kJan1 + 1);

  Reply days = Call("GET", "/api/usage?from=2026-01-01&to=2026-01-02&group_by=day", acme_read_);
  ASSERT_EQ(days.status, 200) << days.raw;
  const auto& d = days.body.at("data").as_array();
  ASSERT_EQ(d.size(), 2u);  // "to" is inclusive: Jan 1 and Jan 2, not Jan 3
  EXPECT_EQ(d[0].at("day").as_string(), "2026-01-01");
  EXPECT_EQ(d[0].at("prompt_tokens").as_int64(), 10);  // the other tenant's 1000 stay out
  EXPECT_EQ(d[1].at("completion_tokens").as_int64(), 2);

  Reply models = Call("GET", "/api/usage?from=2026-01-01&group_by=model&format=csv", acme_read_);
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(models.raw,
            "model,kind,records,prompt_tokens,cached_prompt_tokens,completion_tokens,bytes,pages,"
            "ocr_pages,byte_hours,compute_ms\r\n"
            "m1,chat_tokens,2,50,0,5,0,0,0,0,0\r\n"
            "m2,chat_tokens,1,20,0,2,0,0,0,0,0\r\n");

  Reply keys = Call("GET", "/api/usage?from=2026-01-01&group_by=key", acme_read_);
  ASSERT_EQ(keys.body.at("data").as_array().size(), 2u);

  // Other tenants: only the platform admin.
  EXPECT_EQ(Call("GET", "/api/usage?tenant=other", acme_read_).status, 403);
  Reply all = Call("GET", "/api/usage?from=2026-01-01&tenant=all&group_by=model", admin_key_);
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all.body.at("data").as_array()[0].at("prompt_tokens").as_int64(), 1050);
  Reply theirs = Call("GET", "/api/usage?from=2026-01-01&tenant=other", admin_key_);
  EXPECT_EQ(theirs.body.at("data").as_array().size(), 1u);
  EXPECT_EQ(Call("GET", "/api/usage?from=yesterday", acme_read_).status, 400);
  EXPECT_EQ(Call("GET", "/api/usage?group_by=week", acme_read_).status, 400);
  // Unix seconds work too.
  Reply secs = Call("GET", "/api/usage?from=" + std::to_string(kJan1 / 1000) + "&to=" +
                               std::to_string((kJan1 + kDay) / 1000) + "&group_by=key",
                    acme_read_);
  ASSERT_EQ(secs.body.at("data").as_array().size(), 1u);
}

TEST_F(BillingRoutesTest, PricesTopUpsLimitsAndStatements) {
  // Prices are versioned (usage is priced as at its time): these take effect on January 1st.
  clock_.SetUnixMs(kJan1);
  // Prices: platform admin only; amounts as exact strings.
  EXPECT_EQ(Call("PUT", "/api/billing/prices", acme_admin_, json::object{{"pattern", "*"}}).status, 403);
  EXPECT_EQ(Call("PUT", "/api/billing/prices", admin_key_,
                 json::object{{"pattern", "*"}, {"input_per_1m", 1.5}})
                .status,
            400);  // a JSON float is refused: money is never binary floating point
  Reply put = Call("PUT", "/api/billing/prices", admin_key_,
                   json::object{{"pattern", "m*"}, {"input_per_1m", "1.5"}, {"output_per_1m", "3"}});
  ASSERT_EQ(put.status, 200) << put.raw;
  // A partial update keeps the other prices.
  put = Call("PUT", "/api/billing/prices", admin_key_, json::object{{"pattern", "m*"}, {"output_per_1m", "4"}});
  EXPECT_EQ(put.body.at("input_per_1m").as_string(), "1.50");
  Reply prices = Call("GET", "/api/billing/prices", acme_read_);
  ASSERT_EQ(prices.status, 200);
  EXPECT_EQ(prices.body.at("currency").as_string(), "CNY");
  EXPECT_EQ(prices.body.at("data").as_array()[0].at("output_per_1m").as_string(), "4.00");

  // Top-up (platform admin), limits (tenant admin for own keys only).
  EXPECT_EQ(Call("POST", "/api/billing/topup", acme_admin_, json::object{{"amount", "5"}}).status, 403);
  Reply top = Call("POST", "/api/billing/topup", admin_key_, json::object{{"tenant", "acme"}, {"amount", "12.345678"}});
  ASSERT_EQ(top.status, 200) << top.raw;
  EXPECT_EQ(top.body.at("mode").as_string(), "prepaid");
  EXPECT_EQ(top.body.at("available").as_string(), "12.345678");
  EXPECT_EQ(Call("POST", "/api/billing/topup", admin_key_, json::object{{"tenant", "acme"}, {"amount", "-1"}}).status,
            400);
  EXPECT_EQ(Call("POST", "/api/billing/limits", acme_admin_, json::object{{"limit", "1"}}).status, 403);
  Reply lim = Call("POST", "/api/billing/limits", acme_admin_,
                   json::object{{"key", acme_read_id_}, {"limit", "0.5"}, {"tokens_per_minute", 1000}});
  ASSERT_EQ(lim.status, 200) << lim.raw;
  EXPECT_EQ(lim.body.at("scope").as_string(), "key");
  EXPECT_EQ(lim.body.at("tokens_per_minute").as_int64(), 1000);
  EXPECT_EQ(Call("POST", "/api/billing/limits", acme_admin_, json::object{{"key", "key_nope"}, {"limit", "1"}}).status,
            404);
  Reply acct = Call("GET", "/api/billing/account?key=" + acme_read_id_, acme_read_);
  EXPECT_EQ(acct.body.at("limit").as_string(), "0.50");
  // Storage quota: set by the platform admin, enforced by CheckStorageQuota.
  ASSERT_EQ(Call("POST", "/api/billing/limits", admin_key_,
                 json::object{{"tenant", "acme"}, {"storage_quota_bytes", 100}})
                .status,
            200);
  EXPECT_EQ(billing_->CheckStorageQuota(acme_, 101).error().code, Code::kPayloadTooLarge);

  // Plans: platform admin adds; tenant admin sees its own.
  EXPECT_EQ(Call("POST", "/api/billing/plans", acme_admin_, json::object{}).status, 403);
  clock_.SetUnixMs(kJan1 + 40 * kDay);
  Reply plan = Call("POST", "/api/billing/plans", admin_key_,
                    json::object{{"tenant", "acme"}, {"kind", "storage_reserved"}, {"capacity", 1000},
                                 {"start", "2026-01-01"}, {"term_months", 12}});
  ASSERT_EQ(plan.status, 201) << plan.raw;
  EXPECT_EQ(plan.body.at("discount_bp").as_int64(), 2000);
  Reply plans = Call("GET", "/api/billing/plans", acme_admin_);
  EXPECT_EQ(plans.body.at("data").as_array().size(), 1u);
  EXPECT_EQ(Call("GET", "/api/billing/plans?tenant=other", acme_admin_).status, 403);

  // Statement: m1 1,000,000 prompt × 1.5 + 500,000 completion × 4 = 1.50 + 2.00.
  Record("s1", acme_, acme_read_id_, "m1", 1'000'000, 500'000, kJan1 + 10 * kDay);
  Reply st = Call("GET", "/api/billing/statements/2026-01", acme_admin_);
  ASSERT_EQ(st.status, 200) << st.raw;
  EXPECT_EQ(st.body.at("subtotal").as_string(), "3.50");  // storage has no price: no line
  EXPECT_EQ(st.body.at("total_due").as_string(), "3.50");
  EXPECT_EQ(st.body.at("usage").at("records").as_int64(), 1);
  Reply csv = Call("GET", "/api/billing/statements/2026-01?format=csv", acme_admin_);
  EXPECT_NE(csv.raw.find("input_tokens,m1,1000000,1.50,1000000,1.50,CNY\r\n"), std::string::npos) << csv.raw;
  EXPECT_NE(csv.raw.find("total_due,,,,,3.50,CNY\r\n"), std::string::npos);
  EXPECT_EQ(Call("GET", "/api/billing/statements/2026-1", acme_admin_).status, 400);
  EXPECT_EQ(Call("GET", "/api/billing/statements/2026-01", acme_read_).status, 403);
  EXPECT_EQ(Call("GET", "/api/billing/statements/2026-01?tenant=acme", other_read_).status, 403);
}

}  // namespace
}  // namespace yunzhi::api
