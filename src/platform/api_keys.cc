#include "yunzhi/platform/api_keys.h"

#include <array>

#include <fmt/format.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/ids.h"

namespace yunzhi::platform {
namespace {

constexpr std::string_view kKeyPrefix = "yz-";
constexpr size_t kSecretChars = 40;
constexpr size_t kShownPrefixChars = 11;  // "yz-" + 8 characters

constexpr std::array<std::pair<Scope, std::string_view>, 3> kScopeNames = {{
    {Scope::kAdmin, "admin"},
    {Scope::kInference, "inference"},
    {Scope::kRead, "read"},
}};

constexpr std::string_view kKeyColumns =
    "id, tenant_id, name, prefix, scopes, requests_per_minute, created_at_ms, last_used_at_ms, "
    "revoked_at_ms";

ApiKey KeyFromRow(const store::Row& r) {
  ApiKey k;
  k.id = r.Text(0);
  k.tenant_id = r.Text(1);
  k.name = r.Text(2);
  k.prefix = r.Text(3);
  // Stored scopes were validated on the way in; an unparsable value grants nothing.
  k.scopes = Scopes::Parse(r.Text(4)).value_or(Scopes());
  k.requests_per_minute = r.OptInt(5);
  k.created_at_ms = r.Int(6);
  k.last_used_at_ms = r.OptInt(7);
  k.revoked_at_ms = r.OptInt(8);
  return k;
}

Error InvalidKeyError() {
  return Error(Code::kUnauthenticated,
               "Incorrect API key provided. Keys are shown once at creation; create a new one "
               "with `yunzhi keys create` or POST /api/keys.",
               "", "invalid_api_key");
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  for (const auto& [s, name] : kScopeNames) {
    if (s == scope) return name;
  }
  return "unknown";
}

Scopes Scopes::Of(std::initializer_list<Scope> scopes) {
  Scopes out;
  for (Scope s : scopes) out.bits_ |= static_cast<uint32_t>(s);
  return out;
}

Result<Scopes> Scopes::Parse(std::string_view text) {
  Scopes out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find_first_of(", ", i);
    if (j == std::string_view::npos) j = text.size();
    std::string_view word = text.substr(i, j - i);
    i = j + 1;
    if (word.empty()) continue;
    bool known = false;
    for (const auto& [s, name] : kScopeNames) {
      if (word == name) {
        out.bits_ |= static_cast<uint32_t>(s);
        known = true;
      }
    }
    if (!known) {
      return InvalidArgumentError(
          fmt::format("unknown scope '{}' (known: admin, inference, read)", word), "scopes");
    }
  }
  return out;
}

bool Scopes::Allows(Scope needed) const {
  // admin implies inference implies read.
  switch (needed) {
    case Scope::kRead:
      return bits_ != 0;
    case Scope::kInference:
      return (bits_ & (static_cast<uint32_t>(Scope::kInference) |
                       static_cast<uint32_t>(Scope::kAdmin))) != 0;
    case Scope::kAdmin:
      return (bits_ & static_cast<uint32_t>(Scope::kAdmin)) != 0;
  }
  return false;
}

std::string Scopes::ToString() const {
  std::string out;
  for (const auto& [s, name] : kScopeNames) {
    if (Granted(s)) {
      if (!out.empty()) out += ',';
      out += name;
    }
  }
  return out;
}

bool Principal::CanAdminister(std::string_view tenant) const {
  if (!scopes.Allows(Scope::kAdmin)) return false;
  return system_tenant || tenant == tenant_id;
}

ApiKeys::ApiKeys(store::Database& db, Tenants& tenants, const Clock& clock, ApiKeysOptions options)
    : db_(db), tenants_(tenants), clock_(clock), options_(options) {}

bool ApiKeys::LooksLikeKey(std::string_view token) {
  if (token.size() != kKeyPrefix.size() + kSecretChars || !token.starts_with(kKeyPrefix)) {
    return false;
  }
  for (char c : token.substr(kKeyPrefix.size())) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum) return false;
  }
  return true;
}

Result<CreatedKey> ApiKeys::Create(std::string_view tenant_id, const KeyOptions& options) {
  if (options.scopes.empty()) {
    return InvalidArgumentError("a key needs at least one scope (admin, inference, read)",
                                "scopes");
  }
  if (options.requests_per_minute && *options.requests_per_minute <= 0) {
    return InvalidArgumentError("requests_per_minute must be a positive integer",
                                "requests_per_minute");
  }
  if (options.name.size() > 200) {
    return InvalidArgumentError("key name must be at most 200 characters", "name");
  }
  YZ_ASSIGN_OR_RETURN(Tenant tenant, tenants_.Find(tenant_id));

  CreatedKey out;
  out.secret = std::string(kKeyPrefix) + crypto::RandomAlnum(kSecretChars);
  ApiKey& k = out.key;
  k.id = NewId("key", clock_);
  k.tenant_id = tenant.id;
  k.name = options.name;
  k.prefix = out.secret.substr(0, kShownPrefixChars);
  k.scopes = options.scopes;
  k.requests_per_minute = options.requests_per_minute;
  k.created_at_ms = clock_.NowUnixMs();
  store::Value rpm = nullptr;
  if (k.requests_per_minute) rpm = *k.requests_per_minute;
  YZ_RETURN_IF_ERROR(
      db_.Execute("INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, "
                  "requests_per_minute, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  {k.id, k.tenant_id, k.name, k.prefix, crypto::Sha256Hex(out.secret),
                   k.scopes.ToString(), rpm, k.created_at_ms}));
  return out;
}

Result<std::vector<ApiKey>> ApiKeys::List(std::string_view tenant_id) {
  std::vector<store::Row> rows;
  if (tenant_id.empty()) {
    YZ_ASSIGN_OR_RETURN(
        rows,
        db_.Query(fmt::format("SELECT {} FROM api_keys ORDER BY created_at_ms, id", kKeyColumns)));
  } else {
    YZ_ASSIGN_OR_RETURN(Tenant tenant, tenants_.Find(tenant_id));
    YZ_ASSIGN_OR_RETURN(rows, db_.Query(fmt::format("SELECT {} FROM api_keys WHERE tenant_id = ? "
                                                    "ORDER BY created_at_ms, id",
                                                    kKeyColumns),
                                        {tenant.id}));
  }
  std::vector<ApiKey> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(KeyFromRow(r));
  return out;
}

Result<ApiKey> ApiKeys::Find(std::string_view id_or_prefix) {
  YZ_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query(fmt::format("SELECT {} FROM api_keys WHERE id = ? OR prefix = ?", kKeyColumns),
                {std::string(id_or_prefix), std::string(id_or_prefix)}));
  if (rows.empty()) return NotFoundError(fmt::format("API key '{}' does not exist", id_or_prefix));
  if (rows.size() > 1) {
    return InvalidArgumentError(
        fmt::format("'{}' matches {} keys; use the key id instead", id_or_prefix, rows.size()));
  }
  return KeyFromRow(rows[0]);
}

Result<ApiKey> ApiKeys::Revoke(std::string_view id_or_prefix) {
  YZ_ASSIGN_OR_RETURN(ApiKey k, Find(id_or_prefix));
  if (k.active()) {
    k.revoked_at_ms = clock_.NowUnixMs();
    YZ_RETURN_IF_ERROR(
        db_.Execute("UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
                    {*k.revoked_at_ms, k.id}));
  }
  Invalidate(k.id);
  return k;
}

Result<bool> ApiKeys::HasActivePlatformAdminKey() {
  YZ_ASSIGN_OR_RETURN(
      auto rows, db_.Query("SELECT k.scopes FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                           "WHERE t.system = 1 AND k.revoked_at_ms IS NULL"));
  for (const auto& r : rows) {
    auto scopes = Scopes::Parse(r.Text(0));
    if (scopes && scopes->Allows(Scope::kAdmin)) return true;
  }
  return false;
}

void ApiKeys::Invalidate(const std::string& key_id) {
  std::unique_lock lock(cache_mutex_);
  std::erase_if(cache_, [&](const auto& kv) { return kv.second.principal.key_id == key_id; });
}

Result<Principal> ApiKeys::LoadPrincipal(const std::string& hash) {
  YZ_ASSIGN_OR_RETURN(
      auto row,
      db_.QueryOne("SELECT k.id, k.prefix, k.scopes, k.requests_per_minute, k.revoked_at_ms, "
                   "t.id, t.name, t.system FROM api_keys k JOIN tenants t ON t.id = k.tenant_id "
                   "WHERE k.secret_hash = ?",
                   {hash}));
  if (!row || !row->IsNull(4)) return InvalidKeyError();  // unknown or revoked
  Principal p;
  p.key_id = row->Text(0);
  p.key_prefix = row->Text(1);
  p.scopes = Scopes::Parse(row->Text(2)).value_or(Scopes());
  p.requests_per_minute = row->OptInt(3);
  p.tenant_id = row->Text(5);
  p.tenant_name = row->Text(6);
  p.system_tenant = row->Int(7) != 0;
  return p;
}

Result<Principal> ApiKeys::Authenticate(std::string_view token) {
  if (!LooksLikeKey(token)) return InvalidKeyError();
  const std::string hash = crypto::Sha256Hex(token);
  const auto now = clock_.SteadyNow();
  const int64_t now_ms = clock_.NowUnixMs();
  const int64_t resolution_ms = options_.last_used_resolution.count();

  Principal principal;
  bool cached = false;
  {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && it->second.expires > now) {
      if (now_ms - it->second.last_used_written_ms < resolution_ms) return it->second.principal;
      principal = it->second.principal;
      cached = true;
    }
  }
  if (!cached) {
    // Cache miss or expired entry: read the key (a revocation by another process shows here).
    YZ_ASSIGN_OR_RETURN(principal, LoadPrincipal(hash));
  }
  bool write_last_used = false;
  {
    std::unique_lock lock(cache_mutex_);
    CacheEntry& entry = cache_[hash];
    if (!cached) {
      entry.principal = principal;
      entry.expires = now + options_.cache_ttl;
    }
    // One thread per period wins the write; the others see the updated stamp.
    write_last_used = now_ms - entry.last_used_written_ms >= resolution_ms;
    if (write_last_used) entry.last_used_written_ms = now_ms;
  }
  if (write_last_used) {
    // Best effort: a failure to record the time must not refuse a valid key.
    (void)db_.Execute("UPDATE api_keys SET last_used_at_ms = ? WHERE id = ?",
                      {now_ms, principal.key_id});
  }
  return principal;
}

}  // namespace yunzhi::platform
