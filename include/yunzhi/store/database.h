// The metadata store: one SQL interface over SQLite (embedded default) and, later, PostgreSQL.
//
// Callers write portable SQL with `?` placeholders (a PostgreSQL backend rewrites them to $n)
// and portable types (TEXT, INTEGER, REAL, BLOB; BIGINT on PostgreSQL). Each module owns its
// tables and registers its own schema migrations (store/migrations.h), so a new backend needs no
// change in callers: only a second SQL text for a migration where the dialects differ.
//
// Thread safety: a Database is safe to use from many threads. An Executor handed to a Transact
// callback belongs to that callback's thread for the callback's duration and must not escape it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::store {

// A bound parameter or a column value. `std::nullptr_t` is SQL NULL.
// `Blob` holds binary data (TEXT columns hold UTF-8 text).
struct Blob {
  std::string bytes;
};
using Value = std::variant<std::nullptr_t, int64_t, double, std::string, Blob>;

// One result row. Column accessors take the 0-based column index and are lenient about storage
// class (an INTEGER column read as Text gives its decimal form), but never about NULL:
// Int/Real/Text on NULL return 0 / 0.0 / "" — use IsNull or the Opt* accessors when NULL matters.
class Row {
 public:
  explicit Row(std::vector<Value> values) : values_(std::move(values)) {}
  size_t size() const { return values_.size(); }
  bool IsNull(size_t i) const;
  int64_t Int(size_t i) const;
  double Real(size_t i) const;
  std::string Text(size_t i) const;
  std::optional<int64_t> OptInt(size_t i) const;
  std::optional<std::string> OptText(size_t i) const;
  const Value& at(size_t i) const { return values_.at(i); }

 private:
  std::vector<Value> values_;
};

// Runs statements. Implemented by the database (each call in its own implicit transaction) and
// by the transaction handle given to Transact.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs a statement that returns no rows; returns the number of rows changed.
  // Errors: kAlreadyExists on a UNIQUE/PRIMARY KEY violation, kFailedPrecondition on another
  // constraint violation, kUnavailable when the database stayed locked past the busy timeout,
  // kInvalidArgument for SQL errors (a bug in the caller), kInternal otherwise.
  virtual Result<int64_t> Execute(std::string_view sql, std::vector<Value> params = {}) = 0;
  // Runs a query and returns all its rows. Errors as for Execute.
  virtual Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params = {}) = 0;
  // Convenience: the first row, or std::nullopt when the query returned none.
  Result<std::optional<Row>> QueryOne(std::string_view sql, std::vector<Value> params = {});
};

struct DatabaseOptions {
  // "sqlite:/path/to/file.db", a plain path (SQLite), or ":memory:" (tests).
  // "postgres://..." is reserved for the PostgreSQL backend (kUnimplemented until it exists).
  std::string url;
  // How long a statement waits for another writer (other thread or process) before kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // Connections kept open; readers run in parallel under WAL, writers take turns.
  int max_connections = 4;
};

class Database : public Executor {
 public:
  // Opens (creating if needed) the database. SQLite: WAL journal, foreign keys on, busy timeout
  // set, synchronous=NORMAL. Errors: kUnavailable when the file cannot be opened or created
  // (message names the path and the OS reason), kInvalidArgument for an unknown URL scheme,
  // kUnimplemented for postgres:// in this build.
  static Result<std::unique_ptr<Database>> Open(const DatabaseOptions& options);

  // Runs `fn` in one write transaction: commits when it returns OK, rolls back and returns its
  // error otherwise (also when it throws: the exception is rethrown after the rollback).
  virtual Status Transact(const std::function<Status(Executor&)>& fn) = 0;

  // "sqlite" or "postgres": lets a migration pick its SQL text.
  virtual std::string_view dialect() const = 0;
};

}  // namespace yunzhi::store
