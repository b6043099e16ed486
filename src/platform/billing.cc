#include "yunzhi/platform/billing.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "yunzhi/base/ids.h"

namespace yunzhi::platform {
namespace {

constexpr int64_t kBytesPerGb = 1'000'000'000;
constexpr int64_t kHoursPerMonth = 730;
constexpr int64_t kMsPerHour = 3'600'000;

constexpr std::string_view kPriceColumns =
    "pattern, input_nanos, cached_input_nanos, output_nanos, embedding_nanos, rerank_nanos, "
    "storage_gb_month_nanos, ocr_1k_pages_nanos, compute_hour_nanos, throughput_1k_tpm_month_nanos";
constexpr std::string_view kAccountColumns =
    "id, tenant_id, is_key, mode, limit_nanos, used_nanos, reserved_nanos, trial_nanos, "
    "trial_used_nanos, trial_expires_ms, tokens_per_minute, storage_quota_bytes, created_at_ms, "
    "period, period_used_nanos";
constexpr std::string_view kPlanColumns =
    "id, tenant_id, kind, model, capacity, discount_bp, start_ms, end_ms, created_at_ms";

Prices PricesFromRow(const store::Row& r) {
  Prices p;
  p.pattern = r.Text(0);
  p.input_per_1m = Money::FromNanos(r.Int(1));
  p.cached_input_per_1m = Money::FromNanos(r.Int(2));
  p.output_per_1m = Money::FromNanos(r.Int(3));
  p.embedding_per_1m = Money::FromNanos(r.Int(4));
  p.rerank_per_1m = Money::FromNanos(r.Int(5));
  p.storage_per_gb_month = Money::FromNanos(r.Int(6));
  p.ocr_per_1k_pages = Money::FromNanos(r.Int(7));
  p.compute_per_hour = Money::FromNanos(r.Int(8));
  p.throughput_per_1k_tpm_month = Money::FromNanos(r.Int(9));
  return p;
}

Account AccountFromRow(const store::Row& r) {
  Account a;
  a.id = r.Text(0);
  a.tenant_id = r.Text(1);
  a.is_key = r.Int(2) != 0;
  a.mode = r.Text(3);
  if (auto l = r.OptInt(4)) a.limit = Money::FromNanos(*l);
  a.used = Money::FromNanos(r.Int(5));
  a.reserved = Money::FromNanos(r.Int(6));
  a.trial = Money::FromNanos(r.Int(7));
  a.trial_used = Money::FromNanos(r.Int(8));
  a.trial_expires_ms = r.OptInt(9);
  a.tokens_per_minute = r.OptInt(10);
  a.storage_quota_bytes = r.OptInt(11);
  a.created_at_ms = r.Int(12);
  a.period = r.Text(13);
  a.period_used = Money::FromNanos(r.Int(14));
  return a;
}

Plan PlanFromRow(const store::Row& r) {
  Plan p;
  p.id = r.Text(0);
  p.tenant_id = r.Text(1);
  p.kind = r.Text(2);
  p.model = r.Text(3);
  p.capacity = r.Int(4);
  p.discount_bp = r.Int(5);
  p.start_ms = r.Int(6);
  p.end_ms = r.Int(7);
  p.created_at_ms = r.Int(8);
  return p;
}

store::Value OptValue(const std::optional<int64_t>& v) {
  return v ? store::Value(*v) : store::Value(nullptr);
}

// The most specific pattern matching `model`: exact, then the longest prefix*, then "*".
const Prices* Match(const std::vector<Prices>& book, std::string_view model) {
  const Prices* best = nullptr;
  size_t best_len = 0;
  for (const auto& p : book) {
    if (p.pattern == model) return &p;
    if (!p.pattern.empty() && p.pattern.back() == '*') {
      std::string_view prefix(p.pattern.data(), p.pattern.size() - 1);
      if (model.substr(0, prefix.size()) == prefix &&
          (best == nullptr || prefix.size() > best_len)) {
        best = &p;
        best_len = prefix.size();
      }
    }
  }
  return best;
}

Error Quota(std::string message) {
  return Error(Code::kQuotaExceeded, std::move(message), "", "insufficient_quota");
}

// Months since year 0 of a "YYYY-MM", and back.
Result<int64_t> MonthIndex(std::string_view month) {
  if (month.size() != 7 || month[4] != '-') {
    return InvalidArgumentError(fmt::format("'{}' is not a month (YYYY-MM)", month), "month");
  }
  int64_t y = 0, m = 0;
  for (size_t i = 0; i < 7; ++i) {
    if (i == 4) continue;
    if (month[i] < '0' || month[i] > '9') {
      return InvalidArgumentError(fmt::format("'{}' is not a month (YYYY-MM)", month), "month");
    }
    (i < 4 ? y : m) = (i < 4 ? y : m) * 10 + (month[i] - '0');
  }
  if (m < 1 || m > 12 || y < 1970) {
    return InvalidArgumentError(fmt::format("'{}' is not a month (YYYY-MM)", month), "month");
  }
  return y * 12 + (m - 1);
}

std::string MonthName(int64_t index) { return fmt::format("{:04d}-{:02d}", index / 12, index % 12 + 1); }

// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int64_t MonthStartMs(int64_t index) {
  return DaysFromCivil(index / 12, index % 12 + 1, 1) * 86'400'000;
}

int64_t MonthOfMs(int64_t ms) {
  // The month containing `ms`: search from the civil year estimate.
  int64_t idx = (1970 + ms / (365LL * 86'400'000 + 86'400'000 / 4)) * 12;
  while (MonthStartMs(idx) > ms) --idx;
  while (MonthStartMs(idx + 1) <= ms) ++idx;
  return idx;
}

}  // namespace

std::vector<StorageTier> DefaultStorageTiers() {
  return {{500, 1500},     {1'000, 2000},   {5'000, 3000},   {10'000, 3500},
          {50'000, 4500},  {100'000, 5000}, {500'000, 6000}, {1'000'000, 7000}};
}

Billing::Billing(store::Database& db, const Clock& clock, BillingOptions options)
    : db_(db), clock_(clock), options_(std::move(options)) {}

// ---- price book

Status Billing::SetPrices(const Prices& p) {
  const std::string& pat = p.pattern;
  const size_t star = pat.find('*');
  if (pat.empty() || pat.size() > 200 || (star != std::string::npos && star != pat.size() - 1)) {
    return InvalidArgumentError(
        "a price pattern is a model name, a prefix ending in '*', or '*'", "pattern");
  }
  const Money all[] = {p.input_per_1m,         p.cached_input_per_1m, p.output_per_1m,
                       p.embedding_per_1m,     p.rerank_per_1m,       p.storage_per_gb_month,
                       p.ocr_per_1k_pages,     p.compute_per_hour,    p.throughput_per_1k_tpm_month};
  for (Money m : all) {
    if (m < Money()) return InvalidArgumentError("prices cannot be negative");
  }
  const int64_t now = clock_.NowUnixMs();
  std::vector<store::Value> params{pat};
  for (Money m : all) params.emplace_back(m.nanos());
  params.emplace_back(now);
  Status r = db_.Transact([&](store::Executor& tx) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute(
        fmt::format("INSERT OR REPLACE INTO billing_price_versions ({}, valid_from_ms, deleted) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,0)",
                    kPriceColumns),
        [&] {
          // Columns in kPriceColumns order, then the time.
          std::vector<store::Value> v{pat};
          for (Money m : all) v.emplace_back(m.nanos());
          v.emplace_back(now);
          return v;
        }()));
    YZ_RETURN_IF_ERROR(tx.Execute(
      fmt::format("INSERT INTO billing_prices ({}, updated_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                  "ON CONFLICT(pattern) DO UPDATE SET input_nanos=excluded.input_nanos, "
                  "cached_input_nanos=excluded.cached_input_nanos, output_nanos=excluded.output_nanos, "
                  "embedding_nanos=excluded.embedding_nanos, rerank_nanos=excluded.rerank_nanos, "
                  "storage_gb_month_nanos=excluded.storage_gb_month_nanos, "
                  "ocr_1k_pages_nanos=excluded.ocr_1k_pages_nanos, "
                  "compute_hour_nanos=excluded.compute_hour_nanos, "
                  "throughput_1k_tpm_month_nanos=excluded.throughput_1k_tpm_month_nanos, "
                  "updated_at_ms=excluded.updated_at_ms",
                  kPriceColumns),
      std::move(params)));
    return OkStatus();
  });
  YZ_RETURN_IF_ERROR(r);
  std::lock_guard lock(prices_mutex_);
  prices_valid_ = false;
  return OkStatus();
}

Result<std::vector<Prices>> Billing::ListPrices() {
  YZ_ASSIGN_OR_RETURN(auto rows, db_.Query(fmt::format(
                                     "SELECT {} FROM billing_prices ORDER BY pattern", kPriceColumns)));
  std::vector<Prices> out;
  for (const auto& r : rows) out.push_back(PricesFromRow(r));
  return out;
}

Result<std::vector<PriceVersion>> Billing::PriceHistory() {
  YZ_ASSIGN_OR_RETURN(auto rows, db_.Query(fmt::format("SELECT {}, valid_from_ms, deleted FROM "
                                                       "billing_price_versions ORDER BY valid_from_ms, pattern",
                                                       kPriceColumns)));
  std::vector<PriceVersion> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back({r.Int(10), r.Int(11) != 0, PricesFromRow(r)});
  return out;
}

std::string Billing::MonthOf(int64_t unix_ms) { return MonthName(MonthOfMs(unix_ms)); }

std::vector<Prices> Billing::BookAt(const std::vector<PriceVersion>& history, int64_t t_ms) {
  std::map<std::string, const PriceVersion*> latest;
  for (const auto& v : history) {
    if (v.valid_from_ms > t_ms) break;  // oldest first
    latest[v.prices.pattern] = &v;
  }
  std::vector<Prices> book;
  for (const auto& [pattern, v] : latest) {
    if (!v->deleted) book.push_back(v->prices);
  }
  return book;
}

Status Billing::DeletePrices(std::string_view pattern) {
  const int64_t now = clock_.NowUnixMs();
  YZ_RETURN_IF_ERROR(db_.Transact([&](store::Executor& tx) -> Status {
    YZ_ASSIGN_OR_RETURN(int64_t n, tx.Execute("DELETE FROM billing_prices WHERE pattern = ?",
                                              {std::string(pattern)}));
    if (n == 0) return NotFoundError(fmt::format("no prices for '{}'", pattern));
    // From now on the pattern matches nothing; usage before now keeps its prices.
    YZ_RETURN_IF_ERROR(tx.Execute(
        fmt::format("INSERT OR REPLACE INTO billing_price_versions ({}, valid_from_ms, deleted) "
                    "VALUES (?,0,0,0,0,0,0,0,0,0,?,1)",
                    kPriceColumns),
        {std::string(pattern), now}));
    return OkStatus();
  }));
  std::lock_guard lock(prices_mutex_);
  prices_valid_ = false;
  return OkStatus();
}

Result<Prices> Billing::PricesFor(std::string_view model) {
  std::lock_guard lock(prices_mutex_);
  const auto now = clock_.SteadyNow();
  if (!prices_valid_ || now - prices_loaded_ > std::chrono::seconds(5)) {
    YZ_ASSIGN_OR_RETURN(prices_cache_, ListPrices());
    prices_loaded_ = now;
    prices_valid_ = true;
  }
  if (const Prices* p = Match(prices_cache_, model)) return *p;
  Prices none;
  none.pattern = std::string(model);
  return none;
}

Result<Money> Billing::ChatCost(const Prices& p, int64_t prompt_tokens, int64_t cached_prompt_tokens,
                                int64_t completion_tokens) {
  YZ_ASSIGN_OR_RETURN(Money in, Money::ForQuantity(p.input_per_1m, prompt_tokens - cached_prompt_tokens, 1'000'000));
  YZ_ASSIGN_OR_RETURN(Money cached, Money::ForQuantity(p.cached_input_per_1m, cached_prompt_tokens, 1'000'000));
  YZ_ASSIGN_OR_RETURN(Money out, Money::ForQuantity(p.output_per_1m, completion_tokens, 1'000'000));
  return in + cached + out;
}

Result<Money> Billing::RecordCost(const Prices& p, const UsageRecord& r) {
  const UsageQuantities& q = r.q;
  if (r.kind == kUsageChatTokens) {
    return ChatCost(p, q.prompt_tokens, q.cached_prompt_tokens, q.completion_tokens);
  }
  if (r.kind == kUsageEmbeddingTokens) return Money::ForQuantity(p.embedding_per_1m, q.prompt_tokens, 1'000'000);
  if (r.kind == kUsageRerankTokens) return Money::ForQuantity(p.rerank_per_1m, q.prompt_tokens, 1'000'000);
  if (r.kind == kUsageDocumentIngest) return Money::ForQuantity(p.ocr_per_1k_pages, q.ocr_pages, 1'000);
  if (r.kind == kUsageModelLoad) return Money::ForQuantity(p.compute_per_hour, q.compute_ms, kMsPerHour);
  return Money();
}

// ---- accounts

Result<Account> Billing::LoadTenantAccount(std::string_view tenant_id) {
  // Read first: the account exists on every request but the first (a write per request would
  // serialise requests on the database's write lock).
  YZ_ASSIGN_OR_RETURN(auto existing, db_.QueryOne(fmt::format("SELECT {} FROM billing_accounts WHERE id = ?",
                                                              kAccountColumns),
                                                  {std::string(tenant_id)}));
  if (existing) return AccountFromRow(*existing);
  const int64_t now = clock_.NowUnixMs();
  // The first use grants the trial credit; DO NOTHING keeps a second grant from happening.
  YZ_RETURN_IF_ERROR(db_.Execute(
      "INSERT INTO billing_accounts (id, tenant_id, is_key, mode, trial_nanos, trial_expires_ms, "
      "created_at_ms) VALUES (?, ?, 0, 'postpaid', ?, ?, ?) ON CONFLICT(id) DO NOTHING",
      {std::string(tenant_id), std::string(tenant_id), options_.trial_credit.nanos(),
       now + options_.trial_days * 86'400'000, now}));
  YZ_ASSIGN_OR_RETURN(auto row, db_.QueryOne(fmt::format("SELECT {} FROM billing_accounts WHERE id = ?",
                                                         kAccountColumns),
                                             {std::string(tenant_id)}));
  if (!row) return InternalError("the tenant's billing account vanished");
  return AccountFromRow(*row);
}

Result<std::optional<Account>> Billing::LoadKeyAccount(std::string_view key_id) {
  YZ_ASSIGN_OR_RETURN(auto row, db_.QueryOne(fmt::format("SELECT {} FROM billing_accounts WHERE id = ? "
                                                         "AND is_key = 1",
                                                         kAccountColumns),
                                             {std::string(key_id)}));
  if (!row) return std::optional<Account>();
  return std::optional<Account>(AccountFromRow(*row));
}

Status Billing::RefreshEntry(std::string_view id, bool is_key, bool force) {
  const auto now = clock_.SteadyNow();
  {
    std::lock_guard lock(ledger_mutex_);
    auto it = ledger_.find(std::string(id));
    if (it != ledger_.end() && it->second.loaded && !force &&
        now - it->second.refreshed < std::chrono::seconds(5)) {
      return OkStatus();
    }
  }
  // The database is read without the ledger's mutex: requests of other accounts go on.
  std::optional<Account> row;
  if (is_key) {
    YZ_ASSIGN_OR_RETURN(row, LoadKeyAccount(id));
  } else {
    YZ_ASSIGN_OR_RETURN(Account a, LoadTenantAccount(id));
    row = std::move(a);
  }
  std::lock_guard lock(ledger_mutex_);
  LedgerEntry& e = ledger_[std::string(id)];
  if (row && (!e.loaded || !e.exists)) {
    // First sight of the row: its money as stored. From now on only this process changes
    // `used`, so the ledger's figures are the truth and the database catches up through the
    // charges; reservations are this process's alone.
    e.account = *row;
    e.account.reserved = Money();
    e.exists = true;
  } else if (row) {
    // Settings only: an admin's change (here or in another process) shows within the refresh.
    Account& a = e.account;
    a.mode = row->mode;
    a.limit = row->limit;
    a.trial = row->trial;
    a.trial_expires_ms = row->trial_expires_ms;
    a.tokens_per_minute = row->tokens_per_minute;
    a.storage_quota_bytes = row->storage_quota_bytes;
  } else {
    e.exists = false;
    e.account = Account();
  }
  e.loaded = true;
  e.refreshed = now;
  return OkStatus();
}

std::optional<Money> Billing::Available(const Account& a, int64_t now_ms) {
  if (!a.limit) return std::nullopt;
  Money spent = a.used;
  if (a.mode != "prepaid") spent = a.period == MonthName(MonthOfMs(now_ms)) ? a.period_used : Money();
  Money trial_left;
  if (!a.is_key && a.trial_expires_ms && *a.trial_expires_ms > now_ms) {
    trial_left = std::max(Money(), a.trial - a.trial_used);
  }
  return trial_left + *a.limit - spent - a.reserved;
}

Result<Account> Billing::TenantAccount(std::string_view tenant_id) {
  YZ_RETURN_IF_ERROR(RefreshEntry(tenant_id, /*is_key=*/false, /*force=*/false));
  std::lock_guard lock(ledger_mutex_);
  return ledger_.at(std::string(tenant_id)).account;
}

Result<std::optional<Account>> Billing::KeyAccount(std::string_view key_id) {
  YZ_RETURN_IF_ERROR(RefreshEntry(key_id, /*is_key=*/true, /*force=*/false));
  std::lock_guard lock(ledger_mutex_);
  const LedgerEntry& e = ledger_.at(std::string(key_id));
  if (!e.exists) return std::optional<Account>();
  return std::optional<Account>(e.account);
}

Result<Account> Billing::TopUp(std::string_view tenant_id, std::string_view key_id, Money amount) {
  if (amount <= Money()) return InvalidArgumentError("a top-up must be positive", "amount");
  AccountUpdate u;
  YZ_ASSIGN_OR_RETURN(Account current, key_id.empty() ? TenantAccount(tenant_id) : [&]() -> Result<Account> {
    YZ_ASSIGN_OR_RETURN(auto k, KeyAccount(key_id));
    if (k) return *k;
    Account a;
    a.limit = Money();
    return a;
  }());
  // Turning a post-paid account prepaid starts its balance at what it has already used.
  const Money base = current.mode == "prepaid" && current.limit ? *current.limit : current.used;
  u.mode = "prepaid";
  u.limit = std::optional<Money>(base + amount);
  return UpdateAccount(tenant_id, key_id, u);
}

Result<Account> Billing::UpdateAccount(std::string_view tenant_id, std::string_view key_id,
                                       const AccountUpdate& u) {
  if (u.mode && *u.mode != "prepaid" && *u.mode != "postpaid") {
    return InvalidArgumentError("mode must be prepaid or postpaid", "mode");
  }
  if (u.limit && *u.limit && **u.limit < Money()) return InvalidArgumentError("a limit cannot be negative", "limit");
  if (u.tokens_per_minute && *u.tokens_per_minute && **u.tokens_per_minute <= 0) {
    return InvalidArgumentError("tokens_per_minute must be positive", "tokens_per_minute");
  }
  if (u.storage_quota_bytes && *u.storage_quota_bytes && **u.storage_quota_bytes < 0) {
    return InvalidArgumentError("storage_quota_bytes cannot be negative", "storage_quota_bytes");
  }
  if (!key_id.empty() && u.storage_quota_bytes) {
    return InvalidArgumentError("storage quotas are per tenant, not per key", "storage_quota_bytes");
  }
  const std::string id(key_id.empty() ? tenant_id : key_id);
  if (key_id.empty()) {
    YZ_RETURN_IF_ERROR(TenantAccount(tenant_id));
  } else {
    YZ_RETURN_IF_ERROR(db_.Execute(
        "INSERT INTO billing_accounts (id, tenant_id, is_key, mode, created_at_ms) VALUES (?, ?, 1, "
        "'postpaid', ?) ON CONFLICT(id) DO NOTHING",
        {id, std::string(tenant_id), clock_.NowUnixMs()}));
  }
  std::vector<std::string> sets;
  std::vector<store::Value> params;
  if (u.mode) {
    sets.push_back("mode = ?");
    params.emplace_back(*u.mode);
  }
  if (u.limit) {
    sets.push_back("limit_nanos = ?");
    params.push_back(*u.limit ? store::Value((*u.limit)->nanos()) : store::Value(nullptr));
  }
  if (u.tokens_per_minute) {
    sets.push_back("tokens_per_minute = ?");
    params.push_back(OptValue(*u.tokens_per_minute));
  }
  if (u.storage_quota_bytes) {
    sets.push_back("storage_quota_bytes = ?");
    params.push_back(OptValue(*u.storage_quota_bytes));
  }
  if (!sets.empty()) {
    std::string sql = "UPDATE billing_accounts SET ";
    for (size_t i = 0; i < sets.size(); ++i) sql += (i ? ", " : "") + sets[i];
    sql += " WHERE id = ? AND tenant_id = ?";
    params.emplace_back(id);
    params.emplace_back(std::string(tenant_id));
    YZ_ASSIGN_OR_RETURN(int64_t n, db_.Execute(sql, std::move(params)));
    if (n == 0) return NotFoundError(fmt::format("no billing account '{}' in tenant '{}'", id, tenant_id));
  }
  YZ_RETURN_IF_ERROR(RefreshEntry(id, !key_id.empty(), /*force=*/true));
  std::lock_guard lock(ledger_mutex_);
  const LedgerEntry& e = ledger_.at(id);
  if (!e.exists) return NotFoundError(fmt::format("no billing account '{}'", id));
  return e.account;
}

// ---- reservations

Status Billing::CheckTokens(std::string_view id, std::optional<int64_t> limit, int64_t tokens,
                            std::string_view what) {
  if (!limit || tokens <= 0) return OkStatus();
  const int64_t minute = clock_.NowUnixMs() / 60'000;
  std::lock_guard lock(windows_mutex_);
  Window& w = windows_[std::string(id)];
  if (w.minute != minute) w = {minute, 0};
  // A request larger than the whole limit may still run alone in a fresh minute.
  if (w.tokens > 0 && w.tokens + tokens > *limit) {
    return Error(Code::kResourceExhausted,
                 fmt::format("{} tokens-per-minute limit of {} reached; retry in the next minute",
                             what, *limit),
                 "", "rate_limit_exceeded");
  }
  w.tokens += tokens;
  return OkStatus();
}

Result<Hold> Billing::Reserve(std::string_view tenant_id, std::string_view key_id, Money max_cost,
                              int64_t tokens) {
  if (max_cost < Money()) return InvalidArgumentError("a reservation cannot be negative");
  YZ_RETURN_IF_ERROR(RefreshEntry(tenant_id, /*is_key=*/false, /*force=*/false));
  if (!key_id.empty()) YZ_RETURN_IF_ERROR(RefreshEntry(key_id, /*is_key=*/true, /*force=*/false));
  std::optional<int64_t> tenant_tpm, key_tpm;
  {
    std::lock_guard lock(ledger_mutex_);
    tenant_tpm = ledger_.at(std::string(tenant_id)).account.tokens_per_minute;
    if (!key_id.empty()) {
      const LedgerEntry& k = ledger_.at(std::string(key_id));
      if (k.exists) key_tpm = k.account.tokens_per_minute;
    }
  }
  if (key_tpm) YZ_RETURN_IF_ERROR(CheckTokens(key_id, key_tpm, tokens, "the API key's"));
  YZ_RETURN_IF_ERROR(CheckTokens(tenant_id, tenant_tpm, tokens, "the tenant's"));
  const int64_t now = clock_.NowUnixMs();
  std::lock_guard lock(ledger_mutex_);
  Account& tenant = ledger_.at(std::string(tenant_id)).account;
  Account* key = nullptr;
  if (!key_id.empty()) {
    LedgerEntry& k = ledger_.at(std::string(key_id));
    if (k.exists) key = &k.account;
  }
  if (!tenant.limit && (key == nullptr || !key->limit)) {
    // Unlimited on both levels: nothing to set aside.
    return Hold{std::string(tenant_id), std::string(key_id), max_cost, false};
  }
  if (key != nullptr && key->limit && *Available(*key, now) < max_cost) {
    return Quota(fmt::format("the API key's {} is exhausted",
                             key->mode == "prepaid" ? "prepaid balance" : "monthly spend limit"));
  }
  if (tenant.limit && *Available(tenant, now) < max_cost) {
    const bool trial_live = tenant.trial_expires_ms && *tenant.trial_expires_ms > now;
    std::string what = tenant.mode == "prepaid" ? "prepaid balance" : "monthly spend limit";
    if (trial_live && tenant.trial > Money()) what = "trial credit and " + what;
    return Quota(fmt::format("the tenant's {} is exhausted (this request may cost up to {} {})",
                             what, max_cost.ToString(), options_.currency));
  }
  if (key != nullptr) key->reserved = key->reserved + max_cost;
  tenant.reserved = tenant.reserved + max_cost;
  return Hold{std::string(tenant_id), std::string(key_id), max_cost, true};
}

Result<UsageCharge> Billing::Settle(const Hold& hold, Money actual) {
  if (actual < Money()) return InvalidArgumentError("a charge cannot be negative");
  // Settling runs on the scheduler thread: it reads the database only for an account it has
  // never seen (a charge without a reservation), never to refresh settings.
  auto loaded = [&](const std::string& id) {
    std::lock_guard lock(ledger_mutex_);
    auto it = ledger_.find(id);
    return it != ledger_.end() && it->second.loaded;
  };
  if (!loaded(hold.tenant_id)) YZ_RETURN_IF_ERROR(RefreshEntry(hold.tenant_id, /*is_key=*/false, /*force=*/false));
  if (!hold.key_id.empty() && !loaded(hold.key_id)) {
    YZ_RETURN_IF_ERROR(RefreshEntry(hold.key_id, /*is_key=*/true, /*force=*/false));
  }
  const int64_t now = clock_.NowUnixMs();
  const std::string period = MonthName(MonthOfMs(now));
  const Money held = hold.reserved ? hold.amount : Money();
  // The month's spend: a new month starts from zero (ApplyCharge does the same in the rows).
  auto spend = [&](Account& a, Money paid) {
    a.used = a.used + paid;
    if (a.period < period) {
      a.period = period;
      a.period_used = Money();
    }
    if (a.period == period) a.period_used = a.period_used + paid;
  };
  std::lock_guard lock(ledger_mutex_);
  Account& tenant = ledger_.at(hold.tenant_id).account;
  if (!hold.key_id.empty()) {
    LedgerEntry& k = ledger_.at(hold.key_id);
    if (k.exists) {
      k.account.reserved = std::max(Money(), k.account.reserved - held);
      spend(k.account, actual);
    }
  }
  tenant.reserved = std::max(Money(), tenant.reserved - held);
  const bool trial_live = tenant.trial_expires_ms && *tenant.trial_expires_ms > now;
  const Money trial_left = trial_live ? std::max(Money(), tenant.trial - tenant.trial_used) : Money();
  const Money from_trial = std::min(trial_left, actual);
  tenant.trial_used = tenant.trial_used + from_trial;
  spend(tenant, actual - from_trial);
  return UsageCharge{hold.tenant_id, hold.key_id, actual.nanos(), from_trial.nanos(), period};
}

Result<UsageCharge> Billing::Charge(std::string_view tenant_id, std::string_view key_id, Money amount) {
  return Settle(Hold{std::string(tenant_id), std::string(key_id), Money(), false}, amount);
}

Result<UsageCharge> Billing::ChargeRecord(const UsageRecord& r) {
  YZ_ASSIGN_OR_RETURN(Prices prices, PricesFor(r.model));
  YZ_ASSIGN_OR_RETURN(Money cost, RecordCost(prices, r));
  return Charge(r.tenant_id, r.key_id, cost);
}

Status Billing::ApplyCharge(store::Executor& tx, const UsageCharge& c) {
  if (c.amount_nanos == 0) return OkStatus();
  // `paid` on the account `id`: all time, and in the month's spend -- added in the same month,
  // restarted by a later month's charge, left alone by an earlier month's (a journal replayed
  // after the month turned). Tenants also count what the trial credit covered.
  auto spend = [&](const std::string& id, bool is_key, int64_t paid, int64_t from_trial) -> Status {
    YZ_RETURN_IF_ERROR(tx.Execute(
        "UPDATE billing_accounts SET used_nanos = used_nanos + ?, trial_used_nanos = trial_used_nanos + ?, "
        "period_used_nanos = CASE WHEN period = ? THEN period_used_nanos + ? WHEN period < ? THEN ? "
        "ELSE period_used_nanos END, period = MAX(period, ?) WHERE id = ? AND is_key = ?",
        {paid, from_trial, c.period, paid, c.period, paid, c.period, id, int64_t{is_key ? 1 : 0}}));
    return OkStatus();
  };
  // Keys without an account have no row: the update then changes nothing, as it should.
  if (!c.key_id.empty()) YZ_RETURN_IF_ERROR(spend(c.key_id, true, c.amount_nanos, 0));
  return spend(c.tenant_id, false, c.amount_nanos - c.from_trial_nanos, c.from_trial_nanos);
}

Status Billing::Commit(const UsageCharge& charge) {
  return db_.Transact([&](store::Executor& tx) { return ApplyCharge(tx, charge); });
}

// ---- storage

Status Billing::CheckStorageQuota(std::string_view tenant_id, int64_t additional_bytes) {
  if (additional_bytes < 0) return InvalidArgumentError("additional_bytes cannot be negative");
  YZ_ASSIGN_OR_RETURN(Account a, TenantAccount(tenant_id));
  if (!a.storage_quota_bytes) return OkStatus();
  int64_t stored = 0;
  if (options_.stored_bytes) {
    YZ_ASSIGN_OR_RETURN(stored, options_.stored_bytes(tenant_id));
  }
  if (stored + additional_bytes > *a.storage_quota_bytes) {
    return Error(Code::kPayloadTooLarge,
                 fmt::format("the tenant's storage quota of {} bytes would be exceeded ({} stored, "
                             "{} more requested)",
                             *a.storage_quota_bytes, stored, additional_bytes),
                 "", "storage_quota_exceeded");
  }
  return OkStatus();
}

// ---- plans

Result<Plan> Billing::AddPlan(std::string_view tenant_id, std::string_view kind, std::string_view model,
                              int64_t capacity, int64_t start_ms, int64_t term_months) {
  if (term_months < 1 || term_months > 120) {
    return InvalidArgumentError("term_months must be between 1 and 120", "term_months");
  }
  Plan p;
  p.tenant_id = std::string(tenant_id);
  p.kind = std::string(kind);
  p.capacity = capacity;
  p.start_ms = start_ms;
  if (kind == kPlanStorageReserved) {
    auto tier = std::find_if(options_.storage_tiers.begin(), options_.storage_tiers.end(),
                             [&](const StorageTier& t) { return t.capacity_gb == capacity; });
    if (tier == options_.storage_tiers.end()) {
      std::string list;
      for (const auto& t : options_.storage_tiers) list += fmt::format("{}{}", list.empty() ? "" : ", ", t.capacity_gb);
      return InvalidArgumentError(fmt::format("storage reservations come in tiers of {} GB", list), "capacity");
    }
    p.discount_bp = tier->discount_bp;
  } else if (kind == kPlanThroughputReserved) {
    if (capacity <= 0) return InvalidArgumentError("reserved throughput needs tokens per minute > 0", "capacity");
    if (model.empty()) return InvalidArgumentError("reserved throughput needs a model", "model");
    p.model = std::string(model);
  } else {
    return InvalidArgumentError(fmt::format("unknown plan kind '{}' (storage_reserved, throughput_reserved)", kind),
                                "kind");
  }
  const int64_t start_month = MonthOfMs(start_ms);
  p.end_ms = MonthStartMs(start_month + term_months) + (start_ms - MonthStartMs(start_month));
  p.id = NewId("plan", clock_);
  p.created_at_ms = clock_.NowUnixMs();
  YZ_RETURN_IF_ERROR(db_.Execute(
      fmt::format("INSERT INTO billing_plans ({}) VALUES (?,?,?,?,?,?,?,?,?)", kPlanColumns),
      {p.id, p.tenant_id, p.kind, p.model, p.capacity, p.discount_bp, p.start_ms, p.end_ms,
       p.created_at_ms}));
  {
    std::lock_guard lock(windows_mutex_);
    plan_cache_.erase(std::string(tenant_id));
  }
  return p;
}

Result<std::vector<Plan>> Billing::ListPlans(std::string_view tenant_id) {
  std::string sql = fmt::format("SELECT {} FROM billing_plans", kPlanColumns);
  std::vector<store::Value> params;
  if (!tenant_id.empty()) {
    sql += " WHERE tenant_id = ?";
    params.emplace_back(std::string(tenant_id));
  }
  sql += " ORDER BY start_ms, id";
  YZ_ASSIGN_OR_RETURN(auto rows, db_.Query(sql, std::move(params)));
  std::vector<Plan> out;
  for (const auto& r : rows) out.push_back(PlanFromRow(r));
  return out;
}

bool Billing::TakeReservedThroughput(std::string_view tenant_id, std::string_view model,
                                     int64_t tokens) {
  if (tokens <= 0) return false;
  const auto now = std::chrono::steady_clock::now();
  std::vector<Plan> plans;
  {
    std::lock_guard lock(windows_mutex_);
    auto it = plan_cache_.find(std::string(tenant_id));
    if (it != plan_cache_.end() && now - it->second.loaded < std::chrono::seconds(5)) {
      plans = it->second.plans;
    } else {
      it = plan_cache_.end();
    }
    if (it == plan_cache_.end()) {
      auto listed = ListPlans(tenant_id);
      if (!listed) return false;  // best effort on a store error: normal priority
      plan_cache_[std::string(tenant_id)] = {now, *listed};
      plans = std::move(*listed);
    }
  }
  const int64_t now_ms = clock_.NowUnixMs();
  int64_t capacity = 0;
  for (const Plan& p : plans) {
    if (p.kind != kPlanThroughputReserved || now_ms < p.start_ms || now_ms >= p.end_ms) continue;
    const bool matches = p.model == model ||
                         (!p.model.empty() && p.model.back() == '*' &&
                          model.substr(0, p.model.size() - 1) == std::string_view(p.model).substr(0, p.model.size() - 1));
    if (matches) capacity += p.capacity;
  }
  if (capacity <= 0) return false;
  const int64_t minute = now_ms / 60'000;
  std::lock_guard lock(windows_mutex_);
  Window& w = reserved_windows_[std::string(tenant_id) + "\n" + std::string(model)];
  if (w.minute != minute) w = {minute, 0};
  if (w.tokens + tokens > capacity) return false;
  w.tokens += tokens;
  return true;
}

Status Billing::DeletePlan(std::string_view plan_id) {
  YZ_ASSIGN_OR_RETURN(int64_t n, db_.Execute("DELETE FROM billing_plans WHERE id = ?", {std::string(plan_id)}));
  if (n == 0) return NotFoundError(fmt::format("no plan '{}'", plan_id));
  std::lock_guard lock(windows_mutex_);
  plan_cache_.clear();
  return OkStatus();
}

// ---- statements

Result<std::pair<int64_t, int64_t>> Billing::MonthRange(std::string_view month) {
  YZ_ASSIGN_OR_RETURN(int64_t idx, MonthIndex(month));
  return std::make_pair(MonthStartMs(idx), MonthStartMs(idx + 1));
}

Result<Statement> Billing::Compute(std::string_view tenant_id, std::string_view month,
                                   const std::vector<PriceVersion>& history) {
  YZ_ASSIGN_OR_RETURN(auto range, MonthRange(month));
  YZ_ASSIGN_OR_RETURN(auto records, Meter::ListFrom(db_, tenant_id, range.first, range.second));
  Statement st;
  st.tenant_id = std::string(tenant_id);
  st.month = std::string(month);
  st.currency = options_.currency;
  // The month cut where the book changed: period i is [starts[i], starts[i + 1]).
  std::vector<int64_t> starts{range.first};
  for (const auto& v : history) {
    if (v.valid_from_ms > starts.back() && v.valid_from_ms < range.second) starts.push_back(v.valid_from_ms);
  }
  std::vector<std::vector<Prices>> books;
  for (int64_t t : starts) books.push_back(BookAt(history, t));
  static const Prices kFree{};
  auto prices = [&](size_t period, const std::string& model) -> const Prices& {
    const Prices* p = Match(books[period], model);
    return p ? *p : kFree;
  };
  // Quantities by (kind, model) and price period, in a stable order.
  std::map<std::pair<std::string, std::string>, std::map<size_t, int64_t>> qty;
  int64_t byte_hours = 0;
  size_t period = 0;
  for (const auto& r : records) {  // oldest first
    while (period + 1 < starts.size() && r.time_ms >= starts[period + 1]) ++period;
    ++st.n_records;
    auto& t = st.usage_totals;
    t.prompt_tokens += r.q.prompt_tokens;
    t.cached_prompt_tokens += r.q.cached_prompt_tokens;
    t.completion_tokens += r.q.completion_tokens;
    t.bytes += r.q.bytes;
    t.pages += r.q.pages;
    t.ocr_pages += r.q.ocr_pages;
    t.byte_hours += r.q.byte_hours;
    t.compute_ms += r.q.compute_ms;
    if (r.kind == kUsageChatTokens) {
      qty[{"input_tokens", r.model}][period] += r.q.prompt_tokens - r.q.cached_prompt_tokens;
      qty[{"cached_input_tokens", r.model}][period] += r.q.cached_prompt_tokens;
      qty[{"output_tokens", r.model}][period] += r.q.completion_tokens;
    } else if (r.kind == kUsageEmbeddingTokens) {
      qty[{"embedding_tokens", r.model}][period] += r.q.prompt_tokens;
    } else if (r.kind == kUsageRerankTokens) {
      qty[{"rerank_tokens", r.model}][period] += r.q.prompt_tokens;
    } else if (r.kind == kUsageDocumentIngest) {
      qty[{"ocr_pages", r.model}][period] += r.q.ocr_pages;
    } else if (r.kind == kUsageModelLoad) {
      qty[{"model_load_ms", r.model}][period] += r.q.compute_ms;
    } else if (r.kind == kUsageStorageSample) {
      byte_hours += r.q.byte_hours;
    }
  }
  auto add_line = [&](std::string kind, std::string model, int64_t quantity, Money unit_price,
                      int64_t per) -> Status {
    if (quantity == 0) return OkStatus();
    YZ_ASSIGN_OR_RETURN(Money exact, Money::ForQuantity(unit_price, quantity, per));
    st.lines.push_back({std::move(kind), std::move(model), quantity, unit_price, per, exact.RoundToCents()});
    return OkStatus();
  };
  // The unit price of a line kind, and its unit.
  auto unit = [](const std::string& kind, const Prices& p) -> std::pair<Money, int64_t> {
    if (kind == "input_tokens") return {p.input_per_1m, 1'000'000};
    if (kind == "cached_input_tokens") return {p.cached_input_per_1m, 1'000'000};
    if (kind == "output_tokens") return {p.output_per_1m, 1'000'000};
    if (kind == "embedding_tokens") return {p.embedding_per_1m, 1'000'000};
    if (kind == "rerank_tokens") return {p.rerank_per_1m, 1'000'000};
    if (kind == "ocr_pages") return {p.ocr_per_1k_pages, 1'000};
    return {p.compute_per_hour, kMsPerHour};  // model_load_ms
  };
  for (const auto& [k, by_period] : qty) {
    const auto& [kind, model] = k;
    // One line per distinct price the usage met (one line when prices did not change).
    std::vector<std::pair<Money, int64_t>> by_price;  // in order of first use
    int64_t per = 1;
    for (const auto& [p, q] : by_period) {
      const auto [price, unit_per] = unit(kind, prices(p, model));
      per = unit_per;
      auto it = std::find_if(by_price.begin(), by_price.end(), [&](const auto& e) { return e.first == price; });
      if (it == by_price.end()) {
        by_price.emplace_back(price, q);
      } else {
        it->second += q;
      }
    }
    for (const auto& [price, q] : by_price) YZ_RETURN_IF_ERROR(add_line(kind, model, q, price, per));
  }
  // Storage: reservations active at any time in the month are billed for the whole month at
  // their discounted price; byte-hours above the reserved capacity × 730 h at pay-as-you-go.
  YZ_ASSIGN_OR_RETURN(auto plans, ListPlans(tenant_id));
  // Plan fees and storage: the book in effect at the start of the month.
  const Prices& storage = prices(0, "*");
  int64_t reserved_gb = 0;
  for (const auto& plan : plans) {
    if (plan.start_ms >= range.second || plan.end_ms <= range.first) continue;
    if (plan.kind == kPlanStorageReserved) {
      reserved_gb += plan.capacity;
      YZ_ASSIGN_OR_RETURN(Money discounted,
                          Money::ForQuantity(storage.storage_per_gb_month, 10'000 - plan.discount_bp, 10'000));
      YZ_RETURN_IF_ERROR(add_line("storage_reserved", "", plan.capacity, discounted, 1));
    } else if (plan.kind == kPlanThroughputReserved) {
      YZ_RETURN_IF_ERROR(add_line("throughput_reserved", plan.model, plan.capacity,
                                  prices(0, plan.model).throughput_per_1k_tpm_month, 1'000));
    }
  }
  const int64_t per_gb_month = kBytesPerGb * kHoursPerMonth;  // byte-hours in one GB-month
  if (reserved_gb > 0) {
    const int64_t included = reserved_gb * per_gb_month;
    YZ_RETURN_IF_ERROR(add_line("storage_overage_byte_hours", "", std::max<int64_t>(0, byte_hours - included),
                                storage.storage_per_gb_month, per_gb_month));
  } else {
    YZ_RETURN_IF_ERROR(add_line("storage_byte_hours", "", byte_hours, storage.storage_per_gb_month, per_gb_month));
  }
  for (const auto& l : st.lines) st.subtotal += l.amount;
  return st;
}

Result<Statement> Billing::MonthlyStatement(std::string_view tenant_id, std::string_view month) {
  YZ_ASSIGN_OR_RETURN(int64_t target, MonthIndex(month));
  YZ_ASSIGN_OR_RETURN(auto history, PriceHistory());
  YZ_ASSIGN_OR_RETURN(Account account, TenantAccount(tenant_id));
  YZ_ASSIGN_OR_RETURN(Statement st, Compute(tenant_id, month, history));
  // The trial credit applies to the months from its grant up to the one in which it expires,
  // each taking what earlier ones left.
  const int64_t grant_month = MonthOfMs(account.created_at_ms);
  const int64_t expires = account.trial_expires_ms.value_or(0);
  auto covered = [&](int64_t m) { return m >= grant_month && MonthStartMs(m) < expires; };
  Money trial_left = account.trial;
  for (int64_t m = grant_month; m < target && covered(m) && trial_left > Money(); ++m) {
    YZ_ASSIGN_OR_RETURN(Statement earlier, Compute(tenant_id, MonthName(m), history));
    trial_left -= std::min(trial_left, earlier.subtotal);
  }
  if (!covered(target)) trial_left = Money();
  // Whole cents only, rounded down, so the credit never exceeds what is left.
  const int64_t applied = std::min(trial_left, st.subtotal).nanos();
  st.trial_credit_applied = Money::FromNanos(applied - applied % (Money::kNanosPerUnit / 100));
  st.total_due = st.subtotal - st.trial_credit_applied;
  return st;
}

std::string Billing::StatementCsv(const Statement& s) {
  std::string out = "line,model,quantity,unit_price,per,amount,currency\r\n";
  for (const auto& l : s.lines) {
    std::string model = l.model;
    if (model.find_first_of(",\"\r\n") != std::string::npos) {
      std::string q = "\"";
      for (char c : model) {
        if (c == '"') q += '"';
        q += c;
      }
      model = q + "\"";
    }
    out += fmt::format("{},{},{},{},{},{},{}\r\n", l.kind, model, l.quantity, l.unit_price.ToString(),
                       l.per, l.amount.ToCentsString(), s.currency);
  }
  out += fmt::format("subtotal,,,,,{},{}\r\n", s.subtotal.ToCentsString(), s.currency);
  out += fmt::format("trial_credit_applied,,,,,-{},{}\r\n", s.trial_credit_applied.ToCentsString(), s.currency);
  out += fmt::format("total_due,,,,,{},{}\r\n", s.total_due.ToCentsString(), s.currency);
  return out;
}

}  // namespace yunzhi::platform
