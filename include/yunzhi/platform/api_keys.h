// API keys: how clients prove who they are.
//
// A key is "yz-" followed by 40 random alphanumeric characters. It is shown once, at creation;
// the store keeps only its SHA-256 and its first 11 characters (the prefix, e.g. "yz-AbC12xYz")
// so people can tell keys apart. Keys carry scopes:
//   read       list models and read metadata
//   inference  read + run models (chat, completions, embeddings, ...)
//   admin      everything on its tenant (keys, spaces, models); on the system tenant, the platform
//
// Authentication is on every /v1 and /api request, so it is cached in memory: a key revoked
// through this process stops working at once; one revoked by another process (the CLI on the
// same data dir) stops within `cache_ttl`. The last-used time is written at most once per
// `last_used_resolution` per key.
//
// Thread safety: ApiKeys is safe from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

enum class Scope : uint32_t { kRead = 1, kInference = 2, kAdmin = 4 };

// A set of scopes; admin implies inference implies read.
class Scopes {
 public:
  Scopes() = default;
  static Scopes Of(std::initializer_list<Scope> scopes);
  // Parses "admin,inference" (comma or space separated). Errors: kInvalidArgument naming the
  // unknown scope.
  static Result<Scopes> Parse(std::string_view text);
  bool Allows(Scope needed) const;
  // Whether `scope` itself was granted (not merely implied by a larger one).
  bool Granted(Scope scope) const { return (bits_ & static_cast<uint32_t>(scope)) != 0; }
  bool empty() const { return bits_ == 0; }
  std::string ToString() const;  // "admin,inference" in a fixed order
  bool operator==(const Scopes&) const = default;

 private:
  uint32_t bits_ = 0;
};

std::string_view ScopeName(Scope scope);

struct ApiKey {
  std::string id;  // "key_01J..."
  std::string tenant_id;
  std::string name;
  std::string prefix;  // "yz-AbC12xYz"
  Scopes scopes;
  std::optional<int64_t> requests_per_minute;  // nullopt: the platform default
  int64_t created_at_ms = 0;
  std::optional<int64_t> last_used_at_ms;
  std::optional<int64_t> revoked_at_ms;
  bool active() const { return !revoked_at_ms.has_value(); }
};

struct CreatedKey {
  ApiKey key;
  std::string secret;  // the whole key: shown once, never stored
};

struct KeyOptions {
  std::string name;
  Scopes scopes = Scopes::Of({Scope::kInference});
  std::optional<int64_t> requests_per_minute;  // must be > 0 when set
};

// Who is calling: the result of authenticating a key.
struct Principal {
  std::string tenant_id;
  std::string tenant_name;
  bool system_tenant = false;
  std::string key_id;
  std::string key_prefix;
  Scopes scopes;
  std::optional<int64_t> requests_per_minute;

  bool Allows(Scope s) const { return scopes.Allows(s); }
  // Admin of the system tenant: may act on any tenant.
  bool IsPlatformAdmin() const { return system_tenant && scopes.Allows(Scope::kAdmin); }
  // May administer `tenant_id` (its own as tenant admin, any as platform admin).
  bool CanAdminister(std::string_view tenant_id) const;
};

struct ApiKeysOptions {
  std::chrono::milliseconds cache_ttl{2000};
  std::chrono::milliseconds last_used_resolution{60'000};
};

class ApiKeys {
 public:
  // `db`, `tenants` and `clock` must outlive this object.
  ApiKeys(store::Database& db, Tenants& tenants, const Clock& clock, ApiKeysOptions options = {});

  // Creates a key for a tenant. Errors: kNotFound (tenant), kInvalidArgument (no scopes, bad rpm).
  Result<CreatedKey> Create(std::string_view tenant_id, const KeyOptions& options);
  // Keys of one tenant (empty `tenant_id`: all tenants), oldest first, revoked ones included.
  Result<std::vector<ApiKey>> List(std::string_view tenant_id = {});
  // Finds a key by id or prefix. Errors: kNotFound; kInvalidArgument when a prefix is ambiguous.
  Result<ApiKey> Find(std::string_view id_or_prefix);
  // Revokes a key (idempotent for an already revoked key). Errors: kNotFound.
  Result<ApiKey> Revoke(std::string_view id_or_prefix);
  // True when the system tenant has at least one active admin key.
  Result<bool> HasActivePlatformAdminKey();

  // Checks a bearer token. Errors: kUnauthenticated ("invalid_api_key") for an unknown, malformed
  // or revoked key; kUnavailable when the store cannot be read.
  Result<Principal> Authenticate(std::string_view token);

  static bool LooksLikeKey(std::string_view token);

 private:
  struct CacheEntry {
    Principal principal;
    std::chrono::steady_clock::time_point expires;
    int64_t last_used_written_ms = 0;
  };
  Result<Principal> LoadPrincipal(const std::string& hash);
  void Invalidate(const std::string& key_id);

  store::Database& db_;
  Tenants& tenants_;
  const Clock& clock_;
  ApiKeysOptions options_;
  std::shared_mutex cache_mutex_;                      // guards cache_
  std::unordered_map<std::string, CacheEntry> cache_;  // by secret hash
};

}  // namespace yunzhi::platform
