#include "yunzhi/store/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/posix.h"

namespace yunzhi::store {
namespace fs = std::filesystem;

namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;
// A temp file this old belongs to no live writer: a blob, even of many GB, is written in minutes.
constexpr auto kStaleTempAge = std::chrono::hours(24);

using Fd = UniqueFd;

Result<Fd> OpenFile(const fs::path& path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return IoError("cannot open", path, errno);
  return Fd(fd);
}

Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

// Reads up to `size` bytes; 0 at end of file.
Result<size_t> ReadSome(int fd, char* buf, size_t size, const fs::path& path) {
  for (;;) {
    ssize_t n = ::read(fd, buf, size);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return IoError("cannot read", path, errno);
  }
}

Status Fsync(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) return IoError("cannot fsync", path, errno);
  return OkStatus();
}

// Makes a rename or creation inside `dir` durable.
Status FsyncDir(const fs::path& dir) {
  YZ_ASSIGN_OR_RETURN(Fd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  return Fsync(fd.get(), dir);
}

// A file being written in <root>/tmp; removed unless committed.
class TempFile {
 public:
  static Result<TempFile> Create(const fs::path& tmp_dir) {
    // Random names: writers in several processes share the directory.
    fs::path path = tmp_dir / ("blob-" + crypto::RandomAlnum(16) + ".tmp");
    YZ_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
    return TempFile(std::move(path), std::move(fd));
  }
  TempFile(TempFile&& other) noexcept
      : path_(std::move(other.path_)), fd_(std::move(other.fd_)), keep_(other.keep_) {
    other.keep_ = true;
  }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    fd_.Close();
    if (!keep_) ::unlink(path_.c_str());
  }

  const fs::path& path() const { return path_; }
  int fd() const { return fd_.get(); }
  // Flushes the bytes to disk and closes the file, ready for rename.
  Status Finish() {
    YZ_RETURN_IF_ERROR(Fsync(fd_.get(), path_));
    if (int err = fd_.Close(); err != 0) return IoError("cannot close", path_, err);
    return OkStatus();
  }
  // Called once the file was renamed away.
  void Release() { keep_ = true; }

 private:
  TempFile(fs::path path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  fs::path path_;
  Fd fd_;
  bool keep_ = false;
};

Error BadDigest(std::string_view digest) {
  return InvalidArgumentError(
      fmt::format("malformed blob digest '{}': expected 64 lowercase hex characters (SHA-256)",
                  digest.substr(0, 80)));
}

// Opens an existing blob for reading.
Result<Fd> OpenBlob(const fs::path& path, std::string_view digest) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError(fmt::format("blob {} not found", digest));
    return IoError("cannot open blob", path, errno);
  }
  return Fd(fd);
}

void RemoveStaleTempFiles(const fs::path& tmp_dir) {
  // Best effort: a file we fail to remove now is tried again at the next start.
  std::error_code ec;
  const auto cutoff = fs::file_time_type::clock::now() - kStaleTempAge;
  for (fs::directory_iterator it(tmp_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_regular_file(ec2)) continue;
    auto mtime = it->last_write_time(ec2);
    if (!ec2 && mtime < cutoff) fs::remove(it->path(), ec2);
  }
}

}  // namespace

bool BlobStore::IsValidDigest(std::string_view digest) {
  if (digest.size() != 64) return false;
  for (char c : digest) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const fs::path& root) {
  std::error_code ec;
  fs::path abs = fs::absolute(root, ec);
  if (ec) {
    return UnavailableError(
        fmt::format("cannot open blob store {}: {}", root.string(), ec.message()));
  }
  abs = abs.lexically_normal();
  for (const char* sub : {"sha256", "tmp"}) {
    fs::create_directories(abs / sub, ec);
    if (ec) {
      return UnavailableError(fmt::format("cannot create blob store directory {}: {}",
                                          (abs / sub).string(), ec.message()));
    }
  }
  {
    // Prove now, not at the first upload, that the store is writable.
    auto probe = TempFile::Create(abs / "tmp");
    if (!probe) {
      return UnavailableError(
          fmt::format("blob store {} is not writable: {}", abs.string(), probe.error().message));
    }
  }
  RemoveStaleTempFiles(abs / "tmp");
  return std::unique_ptr<BlobStore>(new BlobStore(std::move(abs)));
}

fs::path BlobStore::PathOf(std::string_view digest) const {
  YZ_CHECK(IsValidDigest(digest));
  return root_ / "sha256" / digest.substr(0, 2) / digest.substr(2);
}

Status BlobStore::Commit(const fs::path& tmp, const std::string& digest) {
  const fs::path shards = root_ / "sha256";
  const fs::path shard = shards / digest.substr(0, 2);
  if (::mkdir(shard.c_str(), 0755) == 0) {
    YZ_RETURN_IF_ERROR(FsyncDir(shards));
  } else if (errno != EEXIST) {
    return IoError("cannot create directory", shard, errno);
  }
  const fs::path target = PathOf(digest);
  // rename() replaces atomically; a concurrent writer of the same bytes ends in the same state.
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    return IoError("cannot move blob into place at", target, errno);
  }
  return FsyncDir(shard);
}

Result<BlobInfo> BlobStore::Put(std::string_view bytes) {
  BlobInfo info{crypto::Sha256Hex(bytes), bytes.size()};
  if (Contains(info.digest)) return info;
  YZ_ASSIGN_OR_RETURN(TempFile tmp, TempFile::Create(root_ / "tmp"));
  YZ_RETURN_IF_ERROR(WriteAll(tmp.fd(), bytes, tmp.path()));
  YZ_RETURN_IF_ERROR(tmp.Finish());
  YZ_RETURN_IF_ERROR(Commit(tmp.path(), info.digest));
  tmp.Release();
  return info;
}

Result<BlobInfo> BlobStore::PutFile(const fs::path& source) {
  int src_fd;
  do {
    src_fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  } while (src_fd < 0 && errno == EINTR);
  if (src_fd < 0) {
    if (errno == ENOENT) {
      return NotFoundError(fmt::format("file {} does not exist", source.string()));
    }
    return IoError("cannot open", source, errno);
  }
  Fd src(src_fd);
  struct stat st {};
  if (::fstat(src.get(), &st) != 0) return IoError("cannot stat", source, errno);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(fmt::format("{} is not a regular file", source.string()));
  }

  YZ_ASSIGN_OR_RETURN(TempFile tmp, TempFile::Create(root_ / "tmp"));
  crypto::Sha256 hash;
  auto buf = std::make_unique<char[]>(kChunkBytes);
  uint64_t size_bytes = 0;
  for (;;) {
    YZ_ASSIGN_OR_RETURN(size_t n, ReadSome(src.get(), buf.get(), kChunkBytes, source));
    if (n == 0) break;
    std::string_view chunk(buf.get(), n);
    hash.Update(chunk);
    YZ_RETURN_IF_ERROR(WriteAll(tmp.fd(), chunk, tmp.path()));
    size_bytes += n;
  }
  BlobInfo info{hash.FinishHex(), size_bytes};
  if (Contains(info.digest)) return info;  // the temp file is removed by its destructor
  YZ_RETURN_IF_ERROR(tmp.Finish());
  YZ_RETURN_IF_ERROR(Commit(tmp.path(), info.digest));
  tmp.Release();
  return info;
}

Result<std::string> BlobStore::Get(std::string_view digest) const {
  if (!IsValidDigest(digest)) return BadDigest(digest);
  const fs::path path = PathOf(digest);
  YZ_ASSIGN_OR_RETURN(Fd fd, OpenBlob(path, digest));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return IoError("cannot stat", path, errno);
  // Blobs are immutable once renamed into place, so the size read here is the size to read.
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t filled = 0;
  while (filled < out.size()) {
    YZ_ASSIGN_OR_RETURN(size_t n,
                        ReadSome(fd.get(), out.data() + filled, out.size() - filled, path));
    if (n == 0) break;
    filled += n;
  }
  out.resize(filled);
  return out;
}

Status BlobStore::Verify(std::string_view digest) const {
  if (!IsValidDigest(digest)) return BadDigest(digest);
  const fs::path path = PathOf(digest);
  YZ_ASSIGN_OR_RETURN(Fd fd, OpenBlob(path, digest));
  crypto::Sha256 hash;
  auto buf = std::make_unique<char[]>(kChunkBytes);
  for (;;) {
    YZ_ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf.get(), kChunkBytes, path));
    if (n == 0) break;
    hash.Update(std::string_view(buf.get(), n));
  }
  std::string actual = hash.FinishHex();
  if (actual != digest) {
    return InternalError(
        fmt::format("corrupt blob {}: its bytes hash to {} ({})", digest, actual, path.string()));
  }
  return OkStatus();
}

bool BlobStore::Contains(std::string_view digest) const {
  if (!IsValidDigest(digest)) return false;
  struct stat st {};
  return ::stat(PathOf(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status BlobStore::Remove(std::string_view digest) {
  if (!IsValidDigest(digest)) return BadDigest(digest);
  const fs::path path = PathOf(digest);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return IoError("cannot remove blob", path, errno);
  }
  // The empty shard directory stays: removing it would race with a Put creating a blob in it.
  return OkStatus();
}

}  // namespace yunzhi::store
