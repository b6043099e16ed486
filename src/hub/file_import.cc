#include "hub/file_import.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/posix.h"

namespace yunzhi::hub::internal {
namespace fs = std::filesystem;

namespace {

// Big enough that syscalls cost nothing next to hashing; small enough to report progress often.
constexpr size_t kChunkBytes = size_t{4} << 20;

using Fd = UniqueFd;

// A path in the blob store's tmp/ directory that is unlinked on destruction unless released.
class TempPath {
 public:
  explicit TempPath(fs::path path) : path_(std::move(path)) {}
  ~TempPath() {
    if (!released_) ::unlink(path_.c_str());
  }
  const fs::path& path() const { return path_; }
  void Release() { released_ = true; }

 private:
  fs::path path_;
  bool released_ = false;
};

Status WriteAll(int fd, const char* data, size_t size, const fs::path& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write", path, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return OkStatus();
}

Result<size_t> ReadSome(int fd, char* buf, size_t size, const fs::path& path) {
  for (;;) {
    ssize_t n = ::read(fd, buf, size);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return IoError("cannot read", path, errno);
  }
}

Status FsyncPath(const fs::path& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open", path, errno);
  Fd owned(fd);
  if (::fsync(fd) != 0) return IoError("cannot fsync", path, errno);
  return OkStatus();
}

// Hashes `src` to its end, copying into `copy_fd` when it is >= 0.
Result<std::string> HashStream(int src, const fs::path& source, int copy_fd,
                               const fs::path& copy_path, const ChunkFn& on_chunk,
                               uint64_t* n_bytes) {
  crypto::Sha256 hash;
  auto buf = std::make_unique<char[]>(kChunkBytes);
  *n_bytes = 0;
  for (;;) {
    YZ_ASSIGN_OR_RETURN(size_t n, ReadSome(src, buf.get(), kChunkBytes, source));
    if (n == 0) break;
    hash.Update(std::string_view(buf.get(), n));
    if (copy_fd >= 0) YZ_RETURN_IF_ERROR(WriteAll(copy_fd, buf.get(), n, copy_path));
    *n_bytes += n;
    if (on_chunk) YZ_RETURN_IF_ERROR(on_chunk(n));
  }
  return hash.FinishHex();
}

bool SameVersion(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// Moves the finished file at `tmp` to the blob's place, unless the blob exists already.
// Returns whether this call created the blob.
Result<bool> CommitBlob(store::BlobStore& blobs, TempPath& tmp, const std::string& digest) {
  if (blobs.Contains(digest)) return false;  // `tmp` goes with its destructor
  const fs::path target = blobs.PathOf(digest);
  const fs::path shard = target.parent_path();
  if (::mkdir(shard.c_str(), 0755) != 0 && errno != EEXIST) {
    return IoError("cannot create directory", shard, errno);
  }
  if (::rename(tmp.path().c_str(), target.c_str()) != 0) {
    return IoError("cannot move blob into place at", target, errno);
  }
  tmp.Release();
  YZ_RETURN_IF_ERROR(FsyncPath(shard, O_RDONLY | O_DIRECTORY));
  return true;
}

}  // namespace

namespace {

// Errors of link(2) after which a copy still works.
bool LinkUnsupported(int err) {
  return err == EXDEV || err == EPERM || err == EMLINK || err == EOPNOTSUPP || err == ENOSYS ||
         err == EACCES || err == ENOENT;  // ENOENT: no /proc to name the open file
}

// Streams `src` (from its start) into a new temp file in the store, hashing as it goes, and
// commits it. `expected_digest`, when not empty, must match (a second pass over a file already
// hashed).
Result<StoredFile> CopyIntoStore(store::BlobStore& blobs, int src, const fs::path& source,
                                 const struct stat& before, const ChunkFn& on_chunk,
                                 std::string_view expected_digest) {
  if (::lseek(src, 0, SEEK_SET) != 0) return IoError("cannot seek", source, errno);
  // A fresh temp file: its mtime is now, so no BlobStore::Open elsewhere takes it for stale.
  TempPath tmp(blobs.root() / "tmp" / ("import-" + crypto::RandomAlnum(16) + ".tmp"));
  int fd = ::open(tmp.path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot create", tmp.path(), errno);
  Fd copy(fd);
  uint64_t n_bytes = 0;
  YZ_ASSIGN_OR_RETURN(std::string digest,
                      HashStream(src, source, copy.get(), tmp.path(), on_chunk, &n_bytes));
  struct stat after {};
  if (::fstat(src, &after) != 0) return IoError("cannot stat", source, errno);
  if (!SameVersion(before, after) || static_cast<uint64_t>(after.st_size) != n_bytes ||
      (!expected_digest.empty() && digest != expected_digest)) {
    return FailedPreconditionError(
        fmt::format("file {} changed while it was being imported; try again", source.string()));
  }
  if (::fsync(copy.get()) != 0) return IoError("cannot fsync", tmp.path(), errno);
  if (int err = copy.Close(); err != 0) return IoError("cannot close", tmp.path(), err);
  StoredFile out;
  out.blob = {std::move(digest), n_bytes};
  YZ_ASSIGN_OR_RETURN(out.created, CommitBlob(blobs, tmp, out.blob.digest));
  return out;
}

}  // namespace

Result<StoredFile> StoreFile(store::BlobStore& blobs, const fs::path& source,
                             const ChunkFn& on_chunk) {
  int raw = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT)
      return NotFoundError(fmt::format("file {} does not exist", source.string()));
    return IoError("cannot open", source, errno);
  }
  Fd src(raw);
  struct stat before {};
  if (::fstat(src.get(), &before) != 0) return IoError("cannot stat", source, errno);
  if (!S_ISREG(before.st_mode)) {
    return InvalidArgumentError(fmt::format("{} is not a regular file", source.string()));
  }
  struct stat store_st {};
  const fs::path shards = blobs.root() / "sha256";
  if (::stat(shards.c_str(), &store_st) != 0) return IoError("cannot stat", shards, errno);
  if (store_st.st_dev != before.st_dev) {
    return CopyIntoStore(blobs, src.get(), source, before, on_chunk, {});
  }

  // Same file system: hash the source where it is, then give it the blob's name with one
  // link(2) — atomic, and the file is complete already. No temp link in tmp/ on the way: a
  // BlobStore::Open in another process would take a link to an old file for a stale temp file.
  uint64_t n_bytes = 0;
  YZ_ASSIGN_OR_RETURN(std::string digest,
                      HashStream(src.get(), source, -1, {}, on_chunk, &n_bytes));
  struct stat after {};
  if (::fstat(src.get(), &after) != 0) return IoError("cannot stat", source, errno);
  if (!SameVersion(before, after) || static_cast<uint64_t>(after.st_size) != n_bytes) {
    return FailedPreconditionError(
        fmt::format("file {} changed while it was being imported; try again", source.string()));
  }
  StoredFile out;
  out.blob = {digest, n_bytes};
  if (blobs.Contains(digest)) return out;
  const fs::path target = blobs.PathOf(digest);
  const fs::path shard = target.parent_path();
  if (::mkdir(shard.c_str(), 0755) != 0 && errno != EEXIST) {
    return IoError("cannot create directory", shard, errno);
  }
  // Link the open file, not the path: the path may name another file by now.
  const std::string self = fmt::format("/proc/self/fd/{}", src.get());
  if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, target.c_str(), AT_SYMLINK_FOLLOW) == 0) {
    YZ_RETURN_IF_ERROR(FsyncPath(shard, O_RDONLY | O_DIRECTORY));
    out.created = true;
    out.linked = true;
    return out;
  }
  if (errno == EEXIST) return out;  // stored concurrently
  if (!LinkUnsupported(errno)) return IoError("cannot link into the blob store", source, errno);
  // Hard links refused (e.g. fs.protected_hardlinks): a second pass that copies.
  return CopyIntoStore(blobs, src.get(), source, before, nullptr, digest);
}

Status LinkBlob(const store::BlobStore& blobs, std::string_view digest, const fs::path& link) {
  const fs::path target = blobs.PathOf(digest);
  if (::link(target.c_str(), link.c_str()) == 0) return OkStatus();
  if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EOPNOTSUPP) {
    return IoError("cannot link blob to", link, errno);
  }
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    return IoError("cannot link blob to", link, errno);
  }
  return OkStatus();
}

}  // namespace yunzhi::hub::internal
