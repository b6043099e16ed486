// The metadata store: one SQL interface over SQLite (embedded default) and, later, PostgreSQL.
//
// Callers write portable SQL with `?` placeholders (a PostgreSQL backend rewrites them to $n)
// and portable types (TEXT, INTEGER, REAL, BLOB; BIGINT on PostgreSQL). Each module owns its
// tables and registers its own schema migrations (store/migrations.h), so a new backend needs no
// change in callers: only a second SQL text for a migration where the dialects differ. To get a
// generated key, use `INSERT ... RETURNING id` with Query (both dialects support it).
//
// Several processes may open the same SQLite file at once (a running server and a management
// command): SQLite's own file locking serialises writers, and a writer that cannot get the lock
// within `busy_timeout` gets kUnavailable.
//
// Thread safety: a Database is safe to use from many threads. An Executor handed to a Transact
// callback belongs to that callback's thread for the callback's duration and must not escape it.
// Fork safety: a Database must not be used in a child process created after it was opened; the
// child opens its own (SQLite connections cannot cross fork()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "yunzhi/base/status.h"

struct sqlite3;

namespace yunzhi::store {

// A bound parameter or a column value. `std::nullptr_t` is SQL NULL.
// `Blob` holds binary data (TEXT columns hold UTF-8 text).
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};
using Value = std::variant<std::nullptr_t, int64_t, double, std::string, Blob>;

// One result row. Column accessors take the 0-based column index and are lenient about storage
// class (an INTEGER column read as Text gives its decimal form, a TEXT column read as Int is
// parsed, giving 0 when it is not a number; a BLOB read as Text gives its bytes), but never about
// NULL: Int/Real/Text on NULL return 0 / 0.0 / "" — use IsNull or the Opt* accessors when NULL
// matters. Precondition for every accessor: i < size(); otherwise std::out_of_range is thrown
// (a bug in the caller, turned into a 500 by the request handler's catch-all).
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
  // Runs a statement that returns no rows (rows it does return are discarded); returns the number
  // of rows inserted, updated or deleted. `sql` may hold several statements separated by ';'
  // (schema migrations), run in order, but only when `params` is empty; outside a transaction each
  // statement commits on its own.
  // Errors: kAlreadyExists on a UNIQUE/PRIMARY KEY violation, kFailedPrecondition on another
  // constraint violation, kUnavailable when the database stayed locked past the busy timeout or
  // the file cannot be written (disk full, I/O error, read-only), kInvalidArgument for SQL errors
  // and a parameter count that does not match the placeholders (bugs in the caller), kInternal
  // otherwise.
  virtual Result<int64_t> Execute(std::string_view sql, std::vector<Value> params = {}) = 0;
  // Runs exactly one statement and returns all its rows. Errors as for Execute.
  virtual Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params = {}) = 0;
  // Convenience: the first row, or std::nullopt when the query returned none.
  Result<std::optional<Row>> QueryOne(std::string_view sql, std::vector<Value> params = {});
};

struct DatabaseOptions {
  // "sqlite:/path/to/file.db" (also "sqlite:///path/to/file.db"), a plain path (SQLite), or
  // ":memory:" (tests; private to this Database object).
  // "postgres://..." is reserved for the PostgreSQL backend (kUnimplemented until it exists).
  std::string url;
  // How long a statement waits for another writer (other thread or process) before kUnavailable.
  // Applies separately to each wait (a free connection, this process's writer turn, the file
  // lock), so a call gives up after at most about three times this.
  std::chrono::milliseconds busy_timeout{5000};
  // Connections kept open; readers run in parallel under WAL, writers take turns.
  // ":memory:" always uses a single connection.
  int max_connections = 4;
  // SQLite only: run on every new connection after its set-up, e.g. to register an FTS5
  // tokenizer (knowledge/text_analysis.h). A non-OK status makes opening fail with it.
  std::vector<std::function<Status(sqlite3*)>> sqlite_connection_hooks;
};

class Database : public Executor {
 public:
  // Opens (creating if needed) the database. SQLite: WAL journal, foreign keys on, busy timeout
  // set, synchronous=NORMAL (a commit survives a process crash; the last commits may be lost on
  // power failure). Errors: kUnavailable when the file cannot be opened or created (message names
  // the path and the OS reason), kInvalidArgument for an unknown URL scheme or bad options,
  // kUnimplemented for postgres:// in this build.
  static Result<std::unique_ptr<Database>> Open(const DatabaseOptions& options);

  // Runs `fn` in one write transaction (SQLite: BEGIN IMMEDIATE, so the write lock is taken up
  // front and the transaction cannot fail later for lack of it): commits when it returns OK, rolls
  // back and returns its error otherwise (also when it throws: the exception is rethrown after the
  // rollback). Inside `fn`, use only the Executor passed to it: using this Database directly (or
  // calling Transact again) from inside the callback returns kFailedPrecondition, because it
  // would not see the transaction's writes and would wait for the transaction's own lock.
  // Errors: those of `fn`, of BEGIN and of COMMIT (kUnavailable when the lock is not obtained).
  virtual Status Transact(const std::function<Status(Executor&)>& fn) = 0;

  // "sqlite" or "postgres": lets a migration pick its SQL text.
  virtual std::string_view dialect() const = 0;
};

}  // namespace yunzhi::store
