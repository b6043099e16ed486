#include "yunzhi/platform/schema.h"

#include "yunzhi/store/migrations.h"

namespace yunzhi::platform {

Status MigrateSchema(store::Database& db) {
  static const std::vector<store::Migration> kMigrations = {
      {1,
       "tenants and api keys",
       R"sql(
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  system INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name TEXT NOT NULL DEFAULT '',
  prefix TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  requests_per_minute INTEGER,
  created_at_ms INTEGER NOT NULL,
  last_used_at_ms INTEGER,
  revoked_at_ms INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys(tenant_id);
CREATE INDEX api_keys_by_prefix ON api_keys(prefix);
)sql",
       {}},
  };
  return store::Migrate(db, "platform", kMigrations);
}

}  // namespace yunzhi::platform
