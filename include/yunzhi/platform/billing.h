// Billing: the price book, plans, per-tenant and per-key balances and limits, reservations that
// make overspending impossible, and monthly statements computed from the usage records.
//
// Money model. Every tenant has an account row (created on first use, with the configured trial
// credit); a key may have one too. An account has an optional `limit`: for a prepaid account the
// sum of its top-ups, for a post-paid one its monthly spend limit (per calendar month, UTC); no
// limit means unlimited pay-as-you-go. `used` is what was settled (all time), `period_used` what
// was settled in the current month, `reserved` what running requests hold. A tenant's trial
// credit (until it expires) is spent before anything else and counts in neither limit.
//   spent   = used (prepaid) | period_used (post-paid)
//   available(tenant) = trial left + limit - spent - reserved     (unlimited without a limit)
//   available(key)    = limit - spent - reserved                  (unlimited without a limit)
//
// The request path touches no disk. Accounts live in an in-memory ledger (loaded from the
// database on first use; their settings -- limit, mode, trial, tokens/minute, quota -- re-read
// at most every 5 s, and at once after a change through this object). Reserve() checks and takes
// a request's maximum cost under one mutex, so concurrent requests can never overspend; a
// reservation lives only as long as its request, so a crash cannot leave money stuck in one.
// Settle() returns the reservation and charges the real cost (trial first) in memory, and hands
// back a UsageCharge: the caller journals it with the request's usage record (Meter::Submit),
// whose transaction applies it to the account rows (ApplyCharge) exactly once, even across a
// crash. Callers without a meter use Commit(). One Billing object per database: the ledger
// assumes that this process is the only one settling charges.
//
// Statements (MonthlyStatement()) are computed from the usage records of the month, so they
// reconcile exactly with /api/usage. Prices are versioned: every change is kept with the time
// it took effect, a usage record is priced with the book in effect when it happened (a change
// mid-month splits a line into one per price), plan fees and storage with the book in effect at
// the start of the month. Every line is rounded half up to 0.01; subtotal = sum of rounded
// lines; trial credit applied = min(subtotal, trial credit not applied in earlier statements)
// while the trial has not expired at the start of the month; total due = subtotal - trial
// credit applied.
//
// Errors: kQuotaExceeded (HTTP 429 insufficient_quota) naming the exhausted limit;
// kResourceExhausted (429 rate_limit_exceeded) for a tokens/minute limit; kPayloadTooLarge for a
// storage quota; kInvalidArgument for bad prices, plans and months; kNotFound for unknown
// accounts or price patterns; kUnavailable when the database is busy.
// Thread safety: Billing is safe to use from many threads (the ledger, the tokens/minute windows
// and the caches are guarded by mutexes; no database call is made with one held).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/money.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

// Prices for the models matching `pattern`: an exact model name, a prefix ending in '*'
// ("qwen2.5-*") or "*" (everything). The most specific match wins: exact, then the longest prefix.
// A model no pattern matches is free.
struct Prices {
  std::string pattern;
  Money input_per_1m{};         // per 1M prompt tokens not served from the prefix cache
  Money cached_input_per_1m{};  // per 1M prompt tokens served from the prefix cache
  Money output_per_1m{};        // per 1M completion tokens
  Money embedding_per_1m{};     // per 1M embedding tokens
  Money rerank_per_1m{};        // per 1M rerank tokens
  Money storage_per_gb_month{}; // per GB (1e9 bytes) stored for a month (730 hours)
  Money ocr_per_1k_pages{};     // per 1,000 OCR pages
  Money compute_per_hour{};     // per hour of model loading
  Money throughput_per_1k_tpm_month{};  // reserved throughput: per 1,000 tokens/minute per month
};

// One change of the price book: `prices` apply to their pattern from `valid_from_ms` on (or,
// when `deleted`, the pattern matches nothing from then on).
struct PriceVersion {
  int64_t valid_from_ms = 0;
  bool deleted = false;
  Prices prices;
};

// A storage reservation tier: capacity and its discount off pay-as-you-go, in basis points.
struct StorageTier {
  int64_t capacity_gb = 0;
  int64_t discount_bp = 0;  // 2500 = 25% off
};
// 500 GB 15%, 1 TB 20%, 5 TB 30%, 10 TB 35%, 50 TB 45%, 100 TB 50%, 500 TB 60%, 1 PB 70%.
std::vector<StorageTier> DefaultStorageTiers();

inline constexpr std::string_view kPlanStorageReserved = "storage_reserved";
inline constexpr std::string_view kPlanThroughputReserved = "throughput_reserved";

// A plan besides pay-as-you-go (which every tenant always has).
struct Plan {
  std::string id;  // "plan_..."
  std::string tenant_id;
  std::string kind;   // kPlanStorageReserved | kPlanThroughputReserved
  std::string model;  // throughput: the model (pattern as priced); storage: empty
  int64_t capacity = 0;     // storage: GB (a tier's capacity); throughput: tokens per minute
  int64_t discount_bp = 0;  // storage: from the tier table; throughput: 0
  int64_t start_ms = 0;
  int64_t end_ms = 0;       // start + term
  int64_t created_at_ms = 0;
};

struct Account {
  std::string id;  // the tenant id or the key id
  std::string tenant_id;
  bool is_key = false;
  std::string mode = "postpaid";  // "prepaid" | "postpaid"
  std::optional<Money> limit;     // nullopt: unlimited
  Money used;
  std::string period;  // the month (UTC, "YYYY-MM") period_used belongs to
  Money period_used;   // settled in `period`, trial excluded
  Money reserved;
  Money trial;       // tenant only: trial credit granted
  Money trial_used;  // tenant only
  std::optional<int64_t> trial_expires_ms;
  std::optional<int64_t> tokens_per_minute;    // nullopt: unlimited
  std::optional<int64_t> storage_quota_bytes;  // tenant only; nullopt: unlimited
  int64_t created_at_ms = 0;
};

// Changes to an account; unset fields stay as they are.
struct AccountUpdate {
  std::optional<std::string> mode;
  std::optional<std::optional<Money>> limit;  // set to nullopt: unlimited
  std::optional<std::optional<int64_t>> tokens_per_minute;
  std::optional<std::optional<int64_t>> storage_quota_bytes;
};

// What a running request holds; give it back with Settle (exactly once).
struct Hold {
  std::string tenant_id;
  std::string key_id;
  Money amount;
  // False when neither account had a limit: nothing was set aside (unlimited pay-as-you-go
  // skips the reservation write), Settle then only charges.
  bool reserved = true;
};

struct StatementLine {
  std::string kind;         // "input_tokens", "cached_input_tokens", "output_tokens",
                            // "embedding_tokens", "rerank_tokens", "ocr_pages", "model_load_ms",
                            // "storage_reserved", "storage_overage_byte_hours",
                            // "storage_byte_hours", "throughput_reserved"
  std::string model;        // empty for storage
  int64_t quantity = 0;     // in the unit of `kind`
  Money unit_price;         // per `per` units
  int64_t per = 1;          // 1'000'000 for tokens, ...
  Money amount;             // rounded to 0.01
};

struct Statement {
  std::string tenant_id;
  std::string month;  // "YYYY-MM"
  std::string currency;
  std::vector<StatementLine> lines;
  Money subtotal;
  Money trial_credit_applied;
  Money total_due;
  UsageQuantities usage_totals;  // sums over every record of the month, to reconcile
  int64_t n_records = 0;
};

struct BillingOptions {
  std::string currency = "CNY";
  Money trial_credit = Money::Units(0);  // granted to each tenant on its first billing use
  int64_t trial_days = 30;
  std::vector<StorageTier> storage_tiers = DefaultStorageTiers();
  // Bytes a tenant stores now (for CheckStorageQuota); null: treated as 0.
  std::function<Result<int64_t>(std::string_view tenant_id)> stored_bytes;
};

class Billing {
 public:
  // The platform schema must be migrated; `db` and `clock` outlive this object.
  Billing(store::Database& db, const Clock& clock, BillingOptions options);

  const BillingOptions& options() const { return options_; }
  const Clock& clock() const { return clock_; }

  // ---- price book
  // Creates or replaces the prices of `prices.pattern`. Errors: kInvalidArgument (bad pattern,
  // negative price).
  Status SetPrices(const Prices& prices);
  Result<std::vector<Prices>> ListPrices();
  Status DeletePrices(std::string_view pattern);  // Errors: kNotFound
  // Every change of the price book, oldest first (prices set before versioning: from time 0).
  Result<std::vector<PriceVersion>> PriceHistory();
  // The book in effect at `t_ms` out of `history`: each pattern's latest version from at or
  // before t_ms, unless that version deleted it; sorted by pattern.
  static std::vector<Prices> BookAt(const std::vector<PriceVersion>& history, int64_t t_ms);
  // The prices that apply to `model` (all zero when nothing matches). Served from a cache that
  // SetPrices/DeletePrices refresh and that expires after 5 s (another process's changes).
  Result<Prices> PricesFor(std::string_view model);
  // Cost of a chat/completion: (prompt - cached) × input + cached × cached input + completion ×
  // output, each rounded half up at 1e-9.
  static Result<Money> ChatCost(const Prices& p, int64_t prompt_tokens, int64_t cached_prompt_tokens,
                                int64_t completion_tokens);

  // What a usage record costs at `p`, exactly (rounded half up at 1e-9): tokens of every kind,
  // OCR pages, model-load time. Storage samples cost nothing here: storage is billed on the
  // statement, where reservations apply.
  static Result<Money> RecordCost(const Prices& p, const UsageRecord& r);

  // ---- accounts
  // What `a` can still spend at `now_ms` (see the file comment); nullopt: unlimited.
  static std::optional<Money> Available(const Account& a, int64_t now_ms);
  // The tenant's account, created with the trial credit on first use. Errors: kUnavailable.
  Result<Account> TenantAccount(std::string_view tenant_id);
  // A key's account; nullopt when the key has none (no key-level limits).
  Result<std::optional<Account>> KeyAccount(std::string_view key_id);
  // Adds `amount` (> 0) to a prepaid balance (the account becomes prepaid). `key_id` empty: the
  // tenant's account. Errors: kInvalidArgument for amount <= 0.
  Result<Account> TopUp(std::string_view tenant_id, std::string_view key_id, Money amount);
  Result<Account> UpdateAccount(std::string_view tenant_id, std::string_view key_id,
                                const AccountUpdate& update);

  // ---- reservations
  // Checks the tokens/minute limits of the tenant and key (counting `tokens`, the request's
  // prompt plus its maximum output), then reserves `max_cost` against the key's and the tenant's
  // available money. Errors: kResourceExhausted (detail "rate_limit_exceeded"), kQuotaExceeded
  // (detail "insufficient_quota") naming the limit.
  Result<Hold> Reserve(std::string_view tenant_id, std::string_view key_id, Money max_cost,
                       int64_t tokens = 0);
  // Releases `hold` and charges `actual` (may be zero) instead, in the ledger; the trial credit
  // goes first. The returned charge must reach the database: through Meter::Submit/Record with
  // the request's usage record, or Commit(). Errors: kInvalidArgument for a negative charge.
  Result<UsageCharge> Settle(const Hold& hold, Money actual);
  // A cost known only afterwards (a model load, OCR pages): Settle without a reservation.
  Result<UsageCharge> Charge(std::string_view tenant_id, std::string_view key_id, Money amount);
  // Charge() what `r` costs at the current prices of its model (RecordCost).
  Result<UsageCharge> ChargeRecord(const UsageRecord& r);
  // Applies a settled charge to the account rows in its own transaction.
  Status Commit(const UsageCharge& charge);
  // Applies `charge` inside `tx` (the meter's insert transaction; see MeterOptions).
  static Status ApplyCharge(store::Executor& tx, const UsageCharge& charge);

  // ---- storage
  // Errors: kPayloadTooLarge when stored bytes + additional_bytes exceed the tenant's quota.
  Status CheckStorageQuota(std::string_view tenant_id, int64_t additional_bytes);

  // ---- plans
  // Adds a plan. Storage: `capacity` must be a tier's capacity in GB (discount from the tier
  // table); throughput: capacity > 0 tokens/minute and a model. `term_months` >= 1.
  Result<Plan> AddPlan(std::string_view tenant_id, std::string_view kind, std::string_view model,
                       int64_t capacity, int64_t start_ms, int64_t term_months);
  Result<std::vector<Plan>> ListPlans(std::string_view tenant_id);  // empty: every tenant
  // Reserved throughput: whether a request of `tokens` for `model` fits the tenant's reserved
  // tokens/minute (throughput plans active now whose model is `model` or a matching `prefix*`);
  // when it does, the tokens are counted against this minute and the request gets the
  // scheduler's reserved priority. Overflow (false) runs at normal priority. Plans are read at
  // most every few seconds per tenant.
  bool TakeReservedThroughput(std::string_view tenant_id, std::string_view model, int64_t tokens);
  Status DeletePlan(std::string_view plan_id);

  // ---- statements
  // The statement of `month` ("YYYY-MM", UTC). Errors: kInvalidArgument for a bad month.
  Result<Statement> MonthlyStatement(std::string_view tenant_id, std::string_view month);
  static std::string StatementCsv(const Statement& s);

  // The month (UTC, "YYYY-MM") of a Unix time in ms.
  static std::string MonthOf(int64_t unix_ms);
  // [start, end) of a "YYYY-MM" month in Unix ms. Errors: kInvalidArgument.
  static Result<std::pair<int64_t, int64_t>> MonthRange(std::string_view month);

 private:
  Result<Statement> Compute(std::string_view tenant_id, std::string_view month,
                            const std::vector<PriceVersion>& history);
  Status CheckTokens(std::string_view id, std::optional<int64_t> limit, int64_t tokens,
                     std::string_view what);
  // The account rows as stored (the tenant's created on first use); no ledger.
  Result<Account> LoadTenantAccount(std::string_view tenant_id);
  Result<std::optional<Account>> LoadKeyAccount(std::string_view key_id);
  // Loads `id`'s ledger entry, or re-reads its settings when they are older than the refresh
  // interval (always when `force`). Called without ledger_mutex_ held.
  Status RefreshEntry(std::string_view id, bool is_key, bool force);

  store::Database& db_;
  const Clock& clock_;
  BillingOptions options_;
  struct Window {
    int64_t minute = 0;  // wall minute the counter belongs to
    int64_t tokens = 0;
  };
  std::mutex windows_mutex_;  // guards windows_ and the two below
  std::unordered_map<std::string, Window> windows_;
  std::unordered_map<std::string, Window> reserved_windows_;  // "tenant\nmodel" -> this minute
  struct PlanCache {
    std::chrono::steady_clock::time_point loaded{};
    std::vector<Plan> plans;
  };
  std::unordered_map<std::string, PlanCache> plan_cache_;  // tenant -> its plans
  // The ledger: accounts by id (tenant or key id), with this process's reservations and charges.
  struct LedgerEntry {
    bool loaded = false;
    bool exists = false;  // keys without an account row: no key-level limits
    Account account;
    std::chrono::steady_clock::time_point refreshed{};
  };
  std::mutex ledger_mutex_;  // guards ledger_
  std::unordered_map<std::string, LedgerEntry> ledger_;
  // The price book, read on every request: cached for a few seconds (changes through this
  // object show at once; through another process within kPriceCacheMs).
  std::mutex prices_mutex_;  // guards the three below
  std::vector<Prices> prices_cache_;
  std::chrono::steady_clock::time_point prices_loaded_{};
  bool prices_valid_ = false;
};

}  // namespace yunzhi::platform
