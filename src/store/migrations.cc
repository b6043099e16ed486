#include "yunzhi/store/migrations.h"

#include <chrono>
#include <string>

#include <fmt/format.h>

namespace yunzhi::store {
namespace {

Status EnsureMigrationsTable(Database& db) {
  // applied_at_ms needs 64 bits: INTEGER is 64-bit on SQLite but 32-bit on PostgreSQL.
  const bool postgres = db.dialect() == "postgres";
  return db
      .Execute(fmt::format("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "module TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
                           "applied_at_ms {} NOT NULL, PRIMARY KEY (module, version))",
                           postgres ? "BIGINT" : "INTEGER"))
      .map([](int64_t) {});
}

Result<int> MaxVersion(Executor& ex, const std::string& module) {
  YZ_ASSIGN_OR_RETURN(
      std::optional<Row> row,
      ex.QueryOne("SELECT MAX(version) FROM schema_migrations WHERE module = ?", {module}));
  return row ? static_cast<int>(row->Int(0)) : 0;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status Validate(const std::string& module, const std::vector<Migration>& migrations) {
  if (module.empty()) return InvalidArgumentError("migration module name is empty");
  int previous = 0;
  for (const Migration& m : migrations) {
    if (m.version <= previous) {
      return InvalidArgumentError(fmt::format(
          "migrations of module '{}' must have strictly increasing versions from 1: {} after {}",
          module, m.version, previous));
    }
    previous = m.version;
  }
  return OkStatus();
}

}  // namespace

Status Migrate(Database& db, const std::string& module, const std::vector<Migration>& migrations) {
  YZ_RETURN_IF_ERROR(Validate(module, migrations));
  YZ_RETURN_IF_ERROR(EnsureMigrationsTable(db));
  const int known = migrations.empty() ? 0 : migrations.back().version;
  YZ_ASSIGN_OR_RETURN(int applied, MaxVersion(db, module));
  if (applied > known) {
    return FailedPreconditionError(fmt::format(
        "the database schema of module '{}' is at version {}, but this build knows only up to "
        "version {}; refusing to run an older build against a newer database",
        module, applied, known));
  }
  const bool postgres = db.dialect() == "postgres";
  for (const Migration& m : migrations) {
    if (m.version <= applied) continue;
    const std::string& sql = postgres && !m.postgres.empty() ? m.postgres : m.sql;
    Status s = db.Transact([&](Executor& tx) -> Status {
      // Another process may have applied it since we looked; the write transaction now
      // excludes it, so this answer stays true until we commit.
      YZ_ASSIGN_OR_RETURN(std::optional<Row> done,
                          tx.QueryOne("SELECT 1 FROM schema_migrations WHERE module = ? AND "
                                      "version = ?",
                                      {module, int64_t{m.version}}));
      if (done) return OkStatus();
      if (auto r = tx.Execute(sql); !r) {
        Error e = std::move(r).error();
        e.message = fmt::format("migration {} of module '{}' ({}) failed: {}", m.version, module,
                                m.name, e.message);
        return e;
      }
      YZ_RETURN_IF_ERROR(
          tx.Execute("INSERT INTO schema_migrations (module, version, name, applied_at_ms) "
                     "VALUES (?, ?, ?, ?)",
                     {module, int64_t{m.version}, m.name, NowMs()}));
      return OkStatus();
    });
    YZ_RETURN_IF_ERROR(s);
  }
  return OkStatus();
}

Result<int> SchemaVersion(Database& db, const std::string& module) {
  YZ_RETURN_IF_ERROR(EnsureMigrationsTable(db));
  return MaxVersion(db, module);
}

}  // namespace yunzhi::store
