// SQLite backend of store::Database.
//
// Concurrency model. Each connection is used by one thread at a time (opened with
// SQLITE_OPEN_NOMUTEX; the pool hands it out). Readers take any free connection and, under WAL,
// never wait for writers. Writers of this process take turns on `write_turn_` before they touch
// SQLite's write lock: without it, two threads of one process would both poll in SQLite's busy
// handler (which sleeps in growing steps) instead of handing over at once. Writers in other
// processes (a management command next to a running server) are serialised by SQLite's file locks
// and wait up to the busy timeout.
//
// Lock order, always: a pooled connection first, then `write_turn_`. A transaction waiting for
// the turn therefore never holds the turn while waiting for a connection, so the two cannot
// deadlock even with a single connection.

#include "store/sqlite_database.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "yunzhi/base/posix.h"
#include "yunzhi/base/status.h"

namespace yunzhi::store::internal {
namespace {

// Prepared statements kept per connection. Callers use a bounded set of SQL texts (one per call
// site), so a small cache holds them all; the bound only matters for ad-hoc SQL.
constexpr size_t kStatementCacheSize = 64;
// SQL quoted in error messages is cut to this length.
constexpr size_t kMaxQuotedSqlChars = 160;

struct Config {
  std::string path;  // absolute file path, or ":memory:"
  bool memory = false;
  std::chrono::milliseconds busy_timeout{0};
  std::vector<std::function<Status(sqlite3*)>> hooks;
};


// One line of `sql`, shortened, for error messages (never the parameter values: they may be
// secrets).
std::string QuoteSql(std::string_view sql) {
  std::string out;
  out.reserve(std::min(sql.size(), kMaxQuotedSqlChars) + 3);
  bool space = false;
  for (char c : sql) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
    if (out.size() >= kMaxQuotedSqlChars) {
      out += "...";
      break;
    }
  }
  return out;
}

// Skips what SQLite ignores between statements: whitespace, ';' and comments.
std::string_view SkipBlank(std::string_view s) {
  for (;;) {
    size_t i = s.find_first_not_of(" \t\r\n\f\v;");
    if (i == std::string_view::npos) return {};
    s.remove_prefix(i);
    if (s.starts_with("--")) {
      size_t eol = s.find('\n');
      if (eol == std::string_view::npos) return {};
      s.remove_prefix(eol + 1);
    } else if (s.starts_with("/*")) {
      size_t end = s.find("*/", 2);
      if (end == std::string_view::npos) return {};
      s.remove_prefix(end + 2);
    } else {
      return s;
    }
  }
}

Error LockedError(const Config& config) {
  return UnavailableError(
      fmt::format("database is locked by another process/writer (gave up after {} ms): {}",
                  config.busy_timeout.count(), config.path));
}

// Maps a SQLite result code (extended codes are on) to our canonical codes.
Error MapError(sqlite3* db, int rc, std::string_view sql, const Config& config) {
  std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return AlreadyExistsError(std::move(message));
      }
      return FailedPreconditionError(std::move(message));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return LockedError(config);
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_FULL: {
      int err = db != nullptr ? sqlite3_system_errno(db) : 0;
      if (err != 0) message += fmt::format(" ({})", OsReason(err));
      return UnavailableError(fmt::format("database {}: {}", config.path, message));
    }
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      return InvalidArgumentError(fmt::format("SQL error: {} in \"{}\"", message, QuoteSql(sql)));
    default:
      return InternalError(fmt::format("database {}: {} (sqlite code {}) in \"{}\"", config.path,
                                       message, rc, QuoteSql(sql)));
  }
}

// Whose turn it is to write, among the threads of this process. A plain mutex and condition
// variable rather than std::timed_mutex: ThreadSanitizer (GCC 12) does not intercept the
// pthread_mutex_clocklock behind timed_mutex::try_lock_for and reports false errors.
class WriterTurn {
 public:
  // Waits up to `timeout` for the turn; false when it did not come.
  [[nodiscard]] bool TryAcquireFor(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!free_cv_.wait_for(lock, timeout, [&] { return !held_; })) return false;
    held_ = true;
    return true;
  }
  void Release() {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
    }
    free_cv_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable free_cv_;  // signalled when the turn is released
  bool held_ = false;                // guarded by mutex_
};

// Holds the turn from a successful TryAcquire until destroyed.
class TurnHolder {
 public:
  TurnHolder() = default;
  TurnHolder(const TurnHolder&) = delete;
  TurnHolder& operator=(const TurnHolder&) = delete;
  ~TurnHolder() {
    if (turn_ != nullptr) turn_->Release();
  }
  [[nodiscard]] bool TryAcquire(WriterTurn& turn, std::chrono::milliseconds timeout) {
    if (!turn.TryAcquireFor(timeout)) return false;
    turn_ = &turn;
    return true;
  }

 private:
  WriterTurn* turn_ = nullptr;
};

// A least-recently-used cache of prepared statements, keyed by SQL text. Owns the statements.
class StatementCache {
 public:
  StatementCache() = default;
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  ~StatementCache() { Clear(); }

  // The statement for `sql`, marked most recently used, or nullptr.
  sqlite3_stmt* Find(std::string_view sql) {
    auto it = index_.find(sql);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->stmt;
  }

  // Takes ownership of `stmt`; evicts the least recently used statement when full.
  // Precondition: `sql` is not cached.
  void Insert(std::string sql, sqlite3_stmt* stmt) {
    lru_.push_front(Entry{std::move(sql), stmt});
    // The key views the string inside the list node, which never moves.
    index_.emplace(lru_.front().sql, lru_.begin());
    if (lru_.size() > kStatementCacheSize) {
      Entry& last = lru_.back();
      index_.erase(last.sql);
      sqlite3_finalize(last.stmt);
      lru_.pop_back();
    }
  }

  void Clear() {
    index_.clear();
    for (Entry& e : lru_) sqlite3_finalize(e.stmt);
    lru_.clear();
  }

 private:
  struct Entry {
    std::string sql;
    sqlite3_stmt* stmt;
  };
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
};

// Returns a statement to a clean state when a run ends, however it ends: a cached statement is
// reset and its bindings cleared (the bound values point into the caller's parameters), an
// uncached one is finalised.
class StatementGuard {
 public:
  StatementGuard(sqlite3_stmt* stmt, bool cached) : stmt_(stmt), cached_(cached) {}
  StatementGuard(const StatementGuard&) = delete;
  StatementGuard& operator=(const StatementGuard&) = delete;
  ~StatementGuard() {
    if (cached_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }

 private:
  sqlite3_stmt* stmt_;
  bool cached_;
};

Value ReadColumn(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(stmt, col));
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt, col);
    case SQLITE_TEXT: {
      // Pointer first, then size: the documented order for a stable result.
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
      int n = sqlite3_column_bytes(stmt, col);
      return p != nullptr ? std::string(p, static_cast<size_t>(n)) : std::string();
    }
    case SQLITE_BLOB: {
      // A zero-length blob comes back as a null pointer.
      const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, col));
      int n = sqlite3_column_bytes(stmt, col);
      return Blob{p != nullptr ? std::string(p, static_cast<size_t>(n)) : std::string()};
    }
    default:
      return nullptr;
  }
}

// One SQLite connection with its statement cache. Used by one thread at a time.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> Open(const Config& config) {
    auto conn = std::unique_ptr<Connection>(new Connection(config));
    YZ_RETURN_IF_ERROR(conn->Init());
    return conn;
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    cache_.Clear();
    sqlite3_close_v2(db_);
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

  // Best effort: leaves the connection outside any transaction.
  void Rollback() {
    if (InTransaction()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  // Runs `sql` (one statement, or several when `params` is empty and `rows` is null); appends
  // result rows to `rows` when given. `write_turn`, when given, is taken around each statement
  // that writes; null inside a transaction, which holds it throughout.
  Result<int64_t> Run(std::string_view sql, const std::vector<Value>& params,
                      std::vector<Row>* rows, WriterTurn* write_turn) {
    if (sqlite3_stmt* cached = cache_.Find(sql)) {
      return RunPrepared(cached, /*cached=*/true, sql, params, rows, write_turn);
    }
    if (sql.size() >= static_cast<size_t>(INT_MAX)) {
      return InvalidArgumentError("SQL text is too long");
    }
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return MapError(db_, rc, sql, config_);
    std::string_view rest = SkipBlank(sql.substr(static_cast<size_t>(tail - sql.data())));
    if (rest.empty()) {
      if (stmt == nullptr) return InvalidArgumentError("empty SQL statement");
      cache_.Insert(std::string(sql), stmt);
      return RunPrepared(stmt, /*cached=*/true, sql, params, rows, write_turn);
    }

    // Several statements (a migration script). Each is prepared only after the previous one ran,
    // since it may use a table the previous one created. They are one-offs: not cached.
    if (!params.empty() || rows != nullptr) {
      sqlite3_finalize(stmt);
      return InvalidArgumentError(fmt::format(
          "only a single statement may take parameters or return rows: \"{}\"", QuoteSql(sql)));
    }
    int64_t n_changed = 0;
    std::string_view piece = sql.substr(0, static_cast<size_t>(tail - sql.data()));
    for (;;) {
      if (stmt != nullptr) {
        YZ_ASSIGN_OR_RETURN(int64_t n,
                            RunPrepared(stmt, /*cached=*/false, piece, {}, nullptr, write_turn));
        n_changed += n;
      }
      if (rest.empty()) break;
      stmt = nullptr;
      rc = sqlite3_prepare_v3(db_, rest.data(), static_cast<int>(rest.size()), 0, &stmt, &tail);
      if (rc != SQLITE_OK) return MapError(db_, rc, rest, config_);
      size_t used = static_cast<size_t>(tail - rest.data());
      piece = rest.substr(0, used);
      rest = SkipBlank(rest.substr(used));
    }
    return n_changed;
  }

 private:
  explicit Connection(const Config& config) : config_(config) {}

  Error OpenError(std::string reason) const {
    return UnavailableError(
        fmt::format("cannot open database {}: {}", config_.path, std::move(reason)));
  }

  Status Init() {
    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    int rc = sqlite3_open_v2(config_.path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      if (db_ == nullptr) return OpenError(sqlite3_errstr(rc));  // out of memory
      int err = sqlite3_system_errno(db_);
      std::string reason = err != 0 ? OsReason(err) : std::string(sqlite3_errmsg(db_));
      if (err == ENOENT) {
        auto dir = std::filesystem::path(config_.path).parent_path();
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) {
          reason += fmt::format(" (directory {} does not exist)", dir.string());
        }
      }
      return OpenError(std::move(reason));
    }
    // SQLite silently falls back to read-only when the file cannot be opened for writing.
    if (!config_.memory && sqlite3_db_readonly(db_, "main") == 1) {
      return OpenError("the file is not writable");
    }
    sqlite3_extended_result_codes(db_, 1);
    auto timeout_ms = std::min<int64_t>(config_.busy_timeout.count(), INT_MAX);
    sqlite3_busy_timeout(db_, static_cast<int>(timeout_ms));

    // Any failure while setting up (not a database, locked, I/O) means the file is unusable.
    if (!config_.memory) {
      std::string mode;
      YZ_RETURN_IF_ERROR(SetupExec("PRAGMA journal_mode=WAL", &mode));
      if (mode != "wal") {
        return OpenError(fmt::format(
            "cannot switch to WAL journal mode (got '{}'); is the file system local?", mode));
      }
    }
    YZ_RETURN_IF_ERROR(SetupExec("PRAGMA synchronous=NORMAL", nullptr));
    YZ_RETURN_IF_ERROR(SetupExec("PRAGMA foreign_keys=ON", nullptr));
    for (const auto& hook : config_.hooks) YZ_RETURN_IF_ERROR(hook(db_));
    return OkStatus();
  }

  // Runs a set-up statement; stores the first column of its first row in `first_value`.
  Status SetupExec(const char* sql, std::string* first_value) {
    auto capture = [](void* out, int n_cols, char** values, char** /*names*/) -> int {
      auto* s = static_cast<std::string*>(out);
      if (s != nullptr && s->empty() && n_cols > 0 && values[0] != nullptr) *s = values[0];
      return 0;
    };
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, capture, first_value, &err);
    if (rc == SQLITE_OK) return OkStatus();
    std::string reason = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
      reason = fmt::format("locked by another process (gave up after {} ms)",
                           config_.busy_timeout.count());
    } else if (int os_err = sqlite3_system_errno(db_); os_err != 0) {
      reason += fmt::format(" ({})", OsReason(os_err));
    }
    return OpenError(std::move(reason));
  }

  Status Bind(sqlite3_stmt* stmt, const std::vector<Value>& params, std::string_view sql) {
    int expected = sqlite3_bind_parameter_count(stmt);
    if (static_cast<size_t>(expected) != params.size()) {
      return InvalidArgumentError(
          fmt::format("statement has {} placeholders but {} parameters were given: \"{}\"",
                      expected, params.size(), QuoteSql(sql)));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      // SQLITE_STATIC: the values outlive the run, and the guard clears the bindings after it.
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) {
              return sqlite3_bind_null(stmt, index);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return sqlite3_bind_int64(stmt, index, v);
            } else if constexpr (std::is_same_v<T, double>) {
              return sqlite3_bind_double(stmt, index, v);
            } else if constexpr (std::is_same_v<T, std::string>) {
              return sqlite3_bind_text64(stmt, index, v.data(), v.size(), SQLITE_STATIC,
                                         SQLITE_UTF8);
            } else {
              // std::string::data() is never null, so an empty Blob binds as an empty blob
              // rather than NULL.
              return sqlite3_bind_blob64(stmt, index, v.bytes.data(), v.bytes.size(),
                                         SQLITE_STATIC);
            }
          },
          params[i]);
      if (rc != SQLITE_OK) return MapError(db_, rc, sql, config_);
    }
    return OkStatus();
  }

  Result<int64_t> RunPrepared(sqlite3_stmt* stmt, bool cached, std::string_view sql,
                              const std::vector<Value>& params, std::vector<Row>* rows,
                              WriterTurn* write_turn) {
    // Declared before the guard so the statement is reset (its write finished) before the turn
    // passes to the next writer.
    TurnHolder turn;
    StatementGuard guard(stmt, cached);
    YZ_RETURN_IF_ERROR(Bind(stmt, params, sql));
    if (write_turn != nullptr && sqlite3_stmt_readonly(stmt) == 0) {
      if (!turn.TryAcquire(*write_turn, config_.busy_timeout)) return LockedError(config_);
    }
    const int64_t total_before = sqlite3_total_changes64(db_);
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW) {
        if (rows != nullptr) {
          const int n_cols = sqlite3_data_count(stmt);
          std::vector<Value> values;
          values.reserve(static_cast<size_t>(n_cols));
          for (int c = 0; c < n_cols; ++c) values.push_back(ReadColumn(stmt, c));
          rows->emplace_back(std::move(values));
        }
        continue;
      }
      if (rc == SQLITE_DONE) break;
      return MapError(db_, rc, sql, config_);
    }
    // sqlite3_changes64 keeps the count of the last INSERT/UPDATE/DELETE, even when this
    // statement was something else; the total only moves when this statement changed rows.
    return sqlite3_total_changes64(db_) == total_before ? 0 : sqlite3_changes64(db_);
  }

  const Config& config_;
  sqlite3* db_ = nullptr;
  StatementCache cache_;
};

// The Executor handed to a Transact callback: runs on the transaction's connection.
class TransactionExecutor final : public Executor {
 public:
  TransactionExecutor(Connection& conn, const Config& config) : conn_(conn), config_(config) {}

  Result<int64_t> Execute(std::string_view sql, std::vector<Value> params) override {
    YZ_RETURN_IF_ERROR(CheckOpen());
    return conn_.Run(sql, params, nullptr, nullptr);
  }

  Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params) override {
    YZ_RETURN_IF_ERROR(CheckOpen());
    std::vector<Row> rows;
    YZ_RETURN_IF_ERROR(conn_.Run(sql, params, &rows, nullptr));
    return rows;
  }

 private:
  // SQLite rolls the whole transaction back on some errors (disk full, I/O error). Running the
  // callback's next statements in autocommit mode would break its atomicity: refuse them.
  Status CheckOpen() {
    if (conn_.InTransaction()) return OkStatus();
    return UnavailableError(fmt::format(
        "transaction on {} was rolled back after an earlier error; nothing was committed",
        config_.path));
  }

  Connection& conn_;
  const Config& config_;
};

// The database whose Transact callback is running on this thread, if any.
thread_local const void* t_transaction_owner = nullptr;

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase(Config config, int max_connections)
      : config_(std::move(config)), max_connections_(max_connections) {}

  ~SqliteDatabase() override {
    std::lock_guard lock(pool_mutex_);
    YZ_DCHECK(static_cast<int>(idle_.size()) == n_open_);  // no connection still leased
    idle_.clear();
  }

  // Opens the first connection, so that Open reports a bad path at once.
  Status Warm() {
    YZ_ASSIGN_OR_RETURN(Lease lease, Acquire());
    return OkStatus();
  }

  Result<int64_t> Execute(std::string_view sql, std::vector<Value> params) override {
    YZ_RETURN_IF_ERROR(CheckNotInOwnTransaction());
    YZ_ASSIGN_OR_RETURN(Lease lease, Acquire());
    return lease.conn().Run(sql, params, nullptr, &write_turn_);
  }

  Result<std::vector<Row>> Query(std::string_view sql, std::vector<Value> params) override {
    YZ_RETURN_IF_ERROR(CheckNotInOwnTransaction());
    YZ_ASSIGN_OR_RETURN(Lease lease, Acquire());
    std::vector<Row> rows;
    YZ_RETURN_IF_ERROR(lease.conn().Run(sql, params, &rows, &write_turn_));
    return rows;
  }

  Status Transact(const std::function<Status(Executor&)>& fn) override {
    YZ_RETURN_IF_ERROR(CheckNotInOwnTransaction());
    YZ_ASSIGN_OR_RETURN(Lease lease, Acquire());
    TurnHolder turn;
    if (!turn.TryAcquire(write_turn_, config_.busy_timeout)) return LockedError(config_);
    Connection& conn = lease.conn();
    YZ_RETURN_IF_ERROR(conn.Run("BEGIN IMMEDIATE", {}, nullptr, nullptr));

    Status result;
    {
      TransactionExecutor tx(conn, config_);
      OwnerMark mark(this);
      try {
        result = fn(tx);
      } catch (...) {
        conn.Rollback();
        throw;
      }
    }
    if (!result) {
      conn.Rollback();
      return result;
    }
    if (!conn.InTransaction()) {
      return UnavailableError(fmt::format(
          "transaction on {} was rolled back after an error inside it; nothing was committed",
          config_.path));
    }
    if (auto commit = conn.Run("COMMIT", {}, nullptr, nullptr); !commit) {
      conn.Rollback();
      return std::move(commit).error();
    }
    return OkStatus();
  }

  std::string_view dialect() const override { return "sqlite"; }

 private:
  // A connection taken from the pool; returned when destroyed.
  class Lease {
   public:
    Lease(SqliteDatabase* db, std::unique_ptr<Connection> conn) : db_(db), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ != nullptr) db_->Release(std::move(conn_));
    }
    Connection& conn() { return *conn_; }

   private:
    SqliteDatabase* db_;
    std::unique_ptr<Connection> conn_;
  };

  // Marks this thread as running a Transact callback of `db` for the mark's lifetime.
  class OwnerMark {
   public:
    explicit OwnerMark(const void* db) : previous_(t_transaction_owner) {
      t_transaction_owner = db;
    }
    ~OwnerMark() { t_transaction_owner = previous_; }

   private:
    const void* previous_;
  };

  Status CheckNotInOwnTransaction() const {
    if (t_transaction_owner != this) return OkStatus();
    return FailedPreconditionError(
        "the database was used directly inside its own Transact callback; use the Executor "
        "passed to the callback");
  }

  Result<Lease> Acquire() {
    std::unique_lock lock(pool_mutex_);
    const bool ready = pool_cv_.wait_for(
        lock, config_.busy_timeout, [&] { return !idle_.empty() || n_open_ < max_connections_; });
    if (!ready) {
      return UnavailableError(fmt::format("all {} connections to database {} stayed busy for {} ms",
                                          max_connections_, config_.path,
                                          config_.busy_timeout.count()));
    }
    if (!idle_.empty()) {
      // Most recently used first: its pages and statements are warm.
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    ++n_open_;
    lock.unlock();
    // Opening touches the file system: done outside the pool lock.
    auto conn = Connection::Open(config_);
    if (!conn) {
      lock.lock();
      --n_open_;
      pool_cv_.notify_one();
      return std::move(conn).error();
    }
    return Lease(this, std::move(*conn));
  }

  void Release(std::unique_ptr<Connection> conn) {
    // A multi-statement Execute may have opened a transaction and failed before ending it.
    conn->Rollback();
    {
      std::lock_guard lock(pool_mutex_);
      idle_.push_back(std::move(conn));
    }
    pool_cv_.notify_one();
  }

  const Config config_;
  const int max_connections_;

  std::mutex pool_mutex_;
  std::condition_variable pool_cv_;  // signalled when a connection is released or a slot frees
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by pool_mutex_
  int n_open_ = 0;  // guarded by pool_mutex_: idle + leased + being opened

  // Held while a statement of this process writes, and for a whole transaction.
  WriterTurn write_turn_;
};

}  // namespace

Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path,
                                             const DatabaseOptions& options) {
  Config config;
  config.busy_timeout = options.busy_timeout;
  config.hooks = options.sqlite_connection_hooks;
  int max_connections = options.max_connections;
  if (path == ":memory:") {
    // A private in-memory database exists per connection: one connection keeps it one database.
    config.memory = true;
    config.path = path;
    max_connections = 1;
  } else {
    // Absolute, so that connections opened later do not depend on the working directory.
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(path, ec);
    if (ec) {
      return UnavailableError(fmt::format("cannot open database {}: {}", path, ec.message()));
    }
    config.path = abs.lexically_normal().string();
  }
  auto db = std::make_unique<SqliteDatabase>(std::move(config), max_connections);
  YZ_RETURN_IF_ERROR(db->Warm());
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace yunzhi::store::internal
