// Content-addressed blob store: files named by the SHA-256 of their bytes under
// <data_dir>/blobs/sha256/<first two hex>/<remaining 62 hex>.
//
// Writes are atomic (temp file in <root>/tmp, fsync, rename, fsync of the directory): a blob is
// either absent or complete, whatever kills the process. Putting the same bytes twice stores them
// once. Thread safety: safe from many threads and processes sharing the directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"

namespace yunzhi::store {

struct BlobInfo {
  std::string digest;  // 64 lowercase hex chars (SHA-256)
  uint64_t size_bytes = 0;
};

class BlobStore {
 public:
  // Opens the store rooted at `root` (created if missing, with sha256/ and tmp/ inside). Temp
  // files older than a day, left by a process that died while writing, are removed. Errors:
  // kUnavailable when the directory cannot be created or written (message names the path and OS
  // reason).
  static Result<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& root);

  // True when `digest` is 64 lowercase hex characters: the only form the methods below accept.
  static bool IsValidDigest(std::string_view digest);

  // Stores `bytes`; returns their digest. Idempotent. Errors: kUnavailable on I/O failure.
  Result<BlobInfo> Put(std::string_view bytes);
  // Streams the file at `source` into the store (hashing while copying; large files never sit in
  // memory). Errors: kNotFound when `source` does not exist, kInvalidArgument when it is not a
  // regular file, kUnavailable on I/O failure.
  Result<BlobInfo> PutFile(const std::filesystem::path& source);
  // Reads a whole blob. Errors: kNotFound; kInvalidArgument for a malformed digest; kUnavailable
  // on I/O failure. Whether the bytes on disk still hash to `digest` is NOT checked here (see
  // Verify) to keep reads cheap.
  Result<std::string> Get(std::string_view digest) const;
  // Re-hashes a blob and reports kInternal ("corrupt blob") if its bytes no longer match its
  // name. Errors also: kNotFound, kInvalidArgument for a malformed digest.
  Status Verify(std::string_view digest) const;
  // False also for a malformed digest.
  bool Contains(std::string_view digest) const;
  // Removes a blob; removing a missing blob is OK (idempotent). Errors: kInvalidArgument for a
  // malformed digest, kUnavailable on I/O failure.
  Status Remove(std::string_view digest);
  // Where the blob lives (it may not exist); for streaming large blobs to clients.
  // Precondition (checked, aborts): IsValidDigest(digest).
  std::filesystem::path PathOf(std::string_view digest) const;

  const std::filesystem::path& root() const { return root_; }

 private:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  // Moves the finished temp file `tmp` (already fsynced) to the blob's place.
  Status Commit(const std::filesystem::path& tmp, const std::string& digest);

  std::filesystem::path root_;
};

}  // namespace yunzhi::store
