// The data directory of one Yunzhi installation, and the lock that gives it to one server.
//
//   <dir>/yunzhi.db    the metadata database (SQLite)
//   <dir>/blobs/       the blob store (store/blob_store.h)
//   <dir>/models/      one directory per imported safetensors model, linking to blobs (hub/)
//   <dir>/server.lock  held by the running `yunzhi serve`
//
// Only `yunzhi serve` takes the ServerLock. Management commands (keys, list, import ...) work on a
// data dir while a server runs on it: they rely on SQLite's own locking (WAL and the busy timeout)
// and on the blob store's atomic renames, and so must not take the lock.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"

namespace yunzhi::store {

// Thread safety: a plain value.
class DataDir {
 public:
  // Creates the directory (and parents) if missing and proves it writable by creating and
  // removing a probe file. A directory created here gets mode 0700 (it holds tenants' data); an
  // existing one keeps its mode. The path is made absolute (so the URLs below do not depend on
  // the working directory). Errors: kUnavailable with the path and the OS reason, e.g.
  // "data dir /x is not writable: Permission denied" / "data dir /x is not a directory".
  static Result<DataDir> Open(const std::filesystem::path& dir);

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path database_path() const { return path_ / "yunzhi.db"; }
  std::filesystem::path blobs_path() const { return path_ / "blobs"; }
  std::filesystem::path models_path() const { return path_ / "models"; }
  std::filesystem::path lock_path() const { return path_ / "server.lock"; }
  // "sqlite:<dir>/yunzhi.db", for DatabaseOptions::url.
  std::string database_url() const { return "sqlite:" + database_path().string(); }

 private:
  explicit DataDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Held by `yunzhi serve` for its whole life: an exclusive, non-blocking flock on
// <dir>/server.lock (released by the kernel if the process dies, so no stale-lock cleanup is
// needed). The file holds "pid=<pid>\nurl=<url>\n" for the error message of a second server.
//
// flock belongs to the open file: a second Acquire fails even from the same process, and a child
// created by fork() shares its parent's lock (the descriptor is close-on-exec, so a program the
// server executes does not). Thread safety: SetUrl must not race with itself.
class ServerLock {
 public:
  // Errors: kFailedPrecondition "data dir /x is in use by another yunzhi server (pid 123,
  // http://127.0.0.1:8080)"; kUnavailable when the lock file cannot be opened or written.
  static Result<std::unique_ptr<ServerLock>> Acquire(const DataDir& dir);

  ServerLock(const ServerLock&) = delete;
  ServerLock& operator=(const ServerLock&) = delete;
  // Releases the lock. Does not delete the file: deleting it would let a server that opened the
  // old file and one that creates a new one both hold "the" lock.
  ~ServerLock();

  // Rewrites the file content once the listener is bound, so that the error message of a second
  // server names where this one listens. Errors: kInvalidArgument when `url` holds a line break,
  // kUnavailable on a write error.
  Status SetUrl(std::string_view url);

  // The URL of the server holding `dir`'s lock, for clients on the same machine (`yunzhi ps`).
  // Errors: kUnavailable "no yunzhi server is running on data dir /x" when nobody holds the
  // lock or the holder has not bound its listener yet.
  static Result<std::string> RunningServerUrl(const DataDir& dir);

 private:
  ServerLock(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  Status WriteContent(std::string_view url);

  std::filesystem::path path_;
  int fd_;
};

}  // namespace yunzhi::store
