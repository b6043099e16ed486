#include "yunzhi/engine/mapped_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>

namespace yunzhi::engine {
namespace {

std::string OsError(int err) { return std::strerror(err); }

// Closes a descriptor on every path out of Open.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

int ToMadvise(MappedFile::Advice advice) {
  switch (advice) {
    case MappedFile::Advice::kNormal:
      return MADV_NORMAL;
    case MappedFile::Advice::kSequential:
      return MADV_SEQUENTIAL;
    case MappedFile::Advice::kRandom:
      return MADV_RANDOM;
    case MappedFile::Advice::kWillNeed:
      return MADV_WILLNEED;
    case MappedFile::Advice::kDontNeed:
      return MADV_DONTNEED;
    case MappedFile::Advice::kHugePages:
      return MADV_HUGEPAGE;
  }
  return MADV_NORMAL;
}

}  // namespace

Result<MappedFile> MappedFile::Open(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return NotFoundError(fmt::format("{}: no such file", path));
    }
    return UnavailableError(fmt::format("{}: cannot open: {}", path, OsError(err)));
  }
  FdCloser closer(fd);

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return UnavailableError(fmt::format("{}: cannot stat: {}", path, OsError(errno)));
  }
  if (S_ISDIR(st.st_mode)) {
    return InvalidArgumentError(fmt::format("{}: is a directory, not a file", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(fmt::format("{}: not a regular file", path));
  }
  if (st.st_size == 0) return MappedFile(path, nullptr, 0);

  const auto size = static_cast<size_t>(st.st_size);
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED) {
    return UnavailableError(fmt::format("{}: cannot map {} bytes: {}", path, size, OsError(errno)));
  }
  // The descriptor is closed on return; the mapping keeps the file alive.
  return MappedFile(path, static_cast<const uint8_t*>(addr), size);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    Reset();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() { Reset(); }

void MappedFile::Reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

void MappedFile::Advise(Advice advice, size_t offset, size_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  length = std::min(length, size_ - offset);
  if (length == 0) return;
  // madvise wants a page-aligned start; the mapping itself starts on a page boundary.
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t start = offset / page * page;
  const size_t end = offset + length;
  (void)::madvise(const_cast<uint8_t*>(data_) + start, end - start, ToMadvise(advice));
}

}  // namespace yunzhi::engine
