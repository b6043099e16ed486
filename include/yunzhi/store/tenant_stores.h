// Per-tenant storage: each tenant's data lives in its own directory, in its own database.
//
//   <root>/<tenant_id>/tenant.db   the tenant's database (SQLite): knowledge spaces, documents,
//                                  chunks and their full-text index, derived models
//   <root>/<tenant_id>/blobs/      the tenant's blob store (uploaded documents, sealed)
//
// Isolation is physical, not a WHERE clause: code handed tenant A's Database or BlobStore cannot
// name a row or blob of tenant B. Deleting a tenant (Purge) removes its directory whole.
// Modules register their per-tenant schema migrations up front; a tenant's database is opened
// and migrated on first use and then kept open (one pool of connections per tenant).
//
// The embedded default is SQLite; a PostgreSQL deployment would map a tenant to a schema of its
// own (not built yet).
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/database.h"
#include "yunzhi/store/migrations.h"

namespace yunzhi::store {

struct TenantStoresOptions {
  std::filesystem::path root;  // usually <data_dir>/tenants
  // (module name, its migrations), applied to every tenant database when it is opened.
  std::vector<std::pair<std::string, std::vector<Migration>>> migrations;
  // Run on every connection (e.g. FTS5 tokenizers); see DatabaseOptions.
  std::vector<std::function<Status(sqlite3*)>> sqlite_connection_hooks;
  std::chrono::milliseconds busy_timeout{5000};
  int max_connections_per_tenant = 4;
};

class TenantStores {
 public:
  // Creates `root` (mode 0700) when missing. Errors: kUnavailable when it cannot be created.
  static Result<std::unique_ptr<TenantStores>> Open(TenantStoresOptions options);
  ~TenantStores();
  TenantStores(const TenantStores&) = delete;
  TenantStores& operator=(const TenantStores&) = delete;

  // The tenant's database, created and migrated on first use.
  // Errors: kInvalidArgument for an id that is not a tenant id ("ten_" + [A-Za-z0-9]), so no id
  // can name a path outside the root; the open/migration errors of store::Database otherwise.
  Result<std::shared_ptr<Database>> DatabaseOf(std::string_view tenant_id);
  // The tenant's blob store. Errors: as for Database.
  Result<std::shared_ptr<BlobStore>> Blobs(std::string_view tenant_id);

  // Tenants that have a directory (created by an earlier Database/Blobs call), for recovery scans.
  std::vector<std::string> ExistingTenants() const;

  // Closes the tenant's handles and deletes its directory. Handles still held elsewhere stay
  // valid objects but their files are gone. Purging a tenant without data is OK.
  Status Purge(std::string_view tenant_id);

  std::filesystem::path DirOf(std::string_view tenant_id) const;
  static bool IsValidTenantId(std::string_view tenant_id);

 private:
  explicit TenantStores(TenantStoresOptions options);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::store
