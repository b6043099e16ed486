// Versioned schema migrations, owned by the module whose tables they create.
//
// Each module keeps an ordered list of migrations under its own name ("platform", "hub", ...).
// Migrate() applies, in one transaction each, the ones not yet recorded in the
// `schema_migrations(module, version, name, applied_at_ms)` table, and refuses to run against a
// database whose recorded version for the module is newer than the code knows (a downgrade).
#pragma once

#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::store {

struct Migration {
  int version = 0;       // 1, 2, 3 ... strictly increasing within a module
  std::string name;      // "create tenants and api keys"
  std::string sql;       // portable SQL, may hold several statements separated by ';'
  std::string postgres;  // optional: PostgreSQL text where it differs from `sql`
};

// Applies the missing migrations of `module`. Errors: kFailedPrecondition when the database is
// newer than `migrations` (downgrade), the failing statement's error otherwise (that migration is
// rolled back; earlier ones stay applied).
Status Migrate(Database& db, const std::string& module, const std::vector<Migration>& migrations);

// The highest applied version of `module` (0 when none).
Result<int> SchemaVersion(Database& db, const std::string& module);

}  // namespace yunzhi::store
