// Private: the SQLite backend of store::Database. Only database.cc (the URL dispatch) and tests
// include this; everything SQLite-specific stays in sqlite_database.cc.
#pragma once

#include <memory>
#include <string>

#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::store::internal {

// Opens a SQLite database at `path` (a file path, or ":memory:" for a private in-memory database)
// with the busy timeout and pool size of `options` (its `url` is ignored). Errors as for
// Database::Open.
Result<std::unique_ptr<Database>> OpenSqlite(const std::string& path,
                                             const DatabaseOptions& options);

}  // namespace yunzhi::store::internal
