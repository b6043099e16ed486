// Small POSIX helpers shared by the modules that touch files directly: an owned file descriptor
// and errno turned into a message.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "yunzhi/base/status.h"

namespace yunzhi {

// The text of an errno value ("No such file or directory").
inline std::string OsReason(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// kUnavailable "<what> <path>: <reason>", e.g. "cannot open /x/y: Permission denied".
Error IoError(std::string_view what, const std::filesystem::path& path, int err);

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Close(); }

  int get() const { return fd_; }
  // Closes now; returns close()'s errno (0 when fine): on some file systems a write error shows
  // only there.
  int Close() {
    if (fd_ < 0) return 0;
    return ::close(std::exchange(fd_, -1)) == 0 ? 0 : errno;
  }

 private:
  int fd_ = -1;
};

}  // namespace yunzhi
