#include "engine/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace yunzhi::engine::internal {
namespace {

Error IoError(const std::string& path, std::string_view what, int err) {
  return UnavailableError(fmt::format("{}: {}: {}", path, what, std::strerror(err)));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<AtomicFileWriter> AtomicFileWriter::Create(const std::string& path) {
  // Unique per process and call; O_EXCL guards against a stale file of the same name.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(tmp, "cannot create", errno);
  return AtomicFileWriter(path, tmp, fd);
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)), tmp_path_(std::move(other.tmp_path_)), fd_(other.fd_) {
  other.fd_ = -1;
  other.tmp_path_.clear();
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

Status AtomicFileWriter::Append(std::span<const uint8_t> bytes) {
  if (fd_ < 0) return InternalError(fmt::format("{}: write after commit", path_));
  const uint8_t* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(tmp_path_, "write failed", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return OkStatus();
}

Status AtomicFileWriter::AppendZeros(uint64_t n) {
  static constexpr uint8_t kZeros[4096] = {};
  while (n > 0) {
    const size_t chunk = n < sizeof kZeros ? static_cast<size_t>(n) : sizeof kZeros;
    YZ_RETURN_IF_ERROR(Append({kZeros, chunk}));
    n -= chunk;
  }
  return OkStatus();
}

Status AtomicFileWriter::Commit() {
  if (fd_ < 0) return InternalError(fmt::format("{}: committed twice", path_));
  if (::fsync(fd_) != 0) return IoError(tmp_path_, "fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return IoError(tmp_path_, "close failed", errno);
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    return IoError(path_, "cannot rename the temporary file into place", errno);
  }
  tmp_path_.clear();
  // Persist the rename itself.
  const std::string dir = DirectoryOf(path_);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
  return OkStatus();
}

}  // namespace yunzhi::engine::internal
