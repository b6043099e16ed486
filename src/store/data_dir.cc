#include "yunzhi/store/data_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/posix.h"

namespace yunzhi::store {
namespace fs = std::filesystem;

namespace {


// The value of "key=value" in the lock file's lines, or "".
std::string Field(std::string_view content, std::string_view key) {
  while (!content.empty()) {
    size_t eol = content.find('\n');
    std::string_view line = content.substr(0, eol);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == '=') {
      return std::string(line.substr(key.size() + 1));
    }
    if (eol == std::string_view::npos) break;
    content.remove_prefix(eol + 1);
  }
  return {};
}

std::string ReadSmallFile(int fd) {
  std::string content(4096, '\0');
  ssize_t n;
  do {
    n = ::pread(fd, content.data(), content.size(), 0);
  } while (n < 0 && errno == EINTR);
  content.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return content;
}

}  // namespace

Result<DataDir> DataDir::Open(const fs::path& dir) {
  std::error_code ec;
  fs::path abs = fs::absolute(dir, ec);
  if (ec) return UnavailableError(fmt::format("data dir {}: {}", dir.string(), ec.message()));
  abs = abs.lexically_normal();
  // "/x/" normalises to "/x/": drop the empty last element so messages and URLs read cleanly.
  if (abs.has_relative_path() && abs.filename().empty()) abs = abs.parent_path();
  const std::string shown = abs.string();

  struct stat st {};
  if (::stat(abs.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return UnavailableError(fmt::format("data dir {} is not a directory", shown));
    }
  } else if (errno == ENOENT) {
    if (abs.has_parent_path() && abs.parent_path() != abs) {
      fs::create_directories(abs.parent_path(), ec);
      if (ec) {
        return UnavailableError(
            fmt::format("data dir {} cannot be created: {}", shown, ec.message()));
      }
    }
    // The data dir holds tenants' metadata and keys: private to the service user.
    if (::mkdir(abs.c_str(), 0700) != 0 && errno != EEXIST) {
      return UnavailableError(
          fmt::format("data dir {} cannot be created: {}", shown, OsReason(errno)));
    }
  } else if (errno == ENOTDIR) {
    // A file where a parent directory should be.
    return UnavailableError(
        fmt::format("data dir {} cannot be created: {}", shown, OsReason(ENOTDIR)));
  } else {
    return UnavailableError(fmt::format("data dir {}: {}", shown, OsReason(errno)));
  }

  const fs::path probe = abs / (".write-probe-" + crypto::RandomAlnum(12));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return UnavailableError(fmt::format("data dir {} is not writable: {}", shown, OsReason(errno)));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return DataDir(std::move(abs));
}

Result<std::unique_ptr<ServerLock>> ServerLock::Acquire(const DataDir& dir) {
  const fs::path path = dir.lock_path();
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return UnavailableError(
        fmt::format("cannot open lock file {}: {}", path.string(), OsReason(errno)));
  }
  int rc;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    std::string content = err == EWOULDBLOCK ? ReadSmallFile(fd) : std::string();
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return UnavailableError(fmt::format("cannot lock {}: {}", path.string(), OsReason(err)));
    }
    // The holder writes its pid just after locking: an empty file means it is starting up.
    std::string pid = Field(content, "pid");
    std::string url = Field(content, "url");
    std::string who = pid.empty() ? "pid unknown" : "pid " + pid;
    if (!url.empty()) who += ", " + url;
    return FailedPreconditionError(fmt::format(
        "data dir {} is in use by another yunzhi server ({})", dir.path().string(), who));
  }
  auto lock = std::unique_ptr<ServerLock>(new ServerLock(path, fd));
  YZ_RETURN_IF_ERROR(lock->WriteContent(""));
  return lock;
}

Result<std::string> ServerLock::RunningServerUrl(const DataDir& dir) {
  const fs::path path = dir.lock_path();
  const auto none = [&] {
    return UnavailableError(
        fmt::format("no yunzhi server is running on data dir {}", dir.path().string()));
  };
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return none();
  // A shared lock we can take means no server holds the exclusive one.
  int rc;
  do {
    rc = ::flock(fd, LOCK_SH | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) {
    ::close(fd);
    return none();
  }
  std::string url = Field(ReadSmallFile(fd), "url");
  ::close(fd);
  if (url.empty()) return none();
  return url;
}

ServerLock::~ServerLock() {
  // Closing the only descriptor of the open file releases the flock.
  ::close(fd_);
}

Status ServerLock::SetUrl(std::string_view url) {
  if (url.find_first_of("\r\n") != std::string_view::npos) {
    return InvalidArgumentError("server URL must not contain a line break");
  }
  return WriteContent(url);
}

Status ServerLock::WriteContent(std::string_view url) {
  std::string content = fmt::format("pid={}\n", ::getpid());
  if (!url.empty()) content += fmt::format("url={}\n", url);
  // Write then truncate: a reader sees the old or the new content plus, at worst for an instant,
  // a tail of the old one; never an empty file once the pid was written.
  std::string_view rest = content;
  off_t offset = 0;
  while (!rest.empty()) {
    ssize_t n = ::pwrite(fd_, rest.data(), rest.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError(
          fmt::format("cannot write lock file {}: {}", path_.string(), OsReason(errno)));
    }
    rest.remove_prefix(static_cast<size_t>(n));
    offset += n;
  }
  if (::ftruncate(fd_, offset) != 0) {
    return UnavailableError(
        fmt::format("cannot write lock file {}: {}", path_.string(), OsReason(errno)));
  }
  return OkStatus();
}

}  // namespace yunzhi::store
