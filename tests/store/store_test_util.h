// Helpers for the store tests: a temporary directory and a fork()ed child that reports back.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include <gtest/gtest.h>
#include <sys/wait.h>

#include "yunzhi/base/status.h"

// Asserts that a Result/Status holds a value, printing its error otherwise.
#define ASSERT_OK(expr)                                       \
  do {                                                        \
    const auto& yz_test_r_ = (expr);                          \
    ASSERT_TRUE(yz_test_r_) << yz_test_r_.error().ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                       \
  do {                                                        \
    const auto& yz_test_r_ = (expr);                          \
    EXPECT_TRUE(yz_test_r_) << yz_test_r_.error().ToString(); \
  } while (0)
// `ASSERT_OK_AND_ASSIGN(auto x, F());`
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(YZ_CONCAT_(yz_test_result_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  ASSERT_TRUE(tmp) << tmp.error().ToString();      \
  lhs = std::move(*tmp)

namespace yunzhi::store::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/yunzhi-store-test-XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A pipe for one-byte signals between a parent and a fork()ed child. Receive gives up after a
// timeout, so a child that died early fails the test instead of hanging it.
class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_) != 0) std::abort();
  }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  bool Send(char c) { return ::write(fds_[1], &c, 1) == 1; }
  // The byte received, or '\0' on timeout.
  char Receive(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    pollfd pfd{fds_[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return '\0';
    char c = '\0';
    return ::read(fds_[0], &c, 1) == 1 ? c : '\0';
  }

 private:
  int fds_[2];
};

// Runs `body` in a fork()ed child process. The child first waits for Start() (so parent and child
// can begin their work together), then sends back the string `body` returns: "" for success, else
// what went wrong. The child never returns into the test: it leaves with _exit, so no destructor
// or gtest handler of the parent's state runs twice.
//
// Fork before opening any Database on the file the child uses: SQLite connections must not cross
// fork(), and SQLite keeps per-file lock state in the process.
class ForkedChild {
 public:
  explicit ForkedChild(const std::function<std::string()>& body) {
    int start[2], report[2];
    if (::pipe(start) != 0 || ::pipe(report) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      ::close(start[1]);
      ::close(report[0]);
      char go;
      std::string result;
      if (::read(start[0], &go, 1) != 1) {
        result = "parent went away before Start()";
      } else {
        try {
          result = body();
        } catch (const std::exception& e) {
          result = std::string("exception: ") + e.what();
        } catch (...) {
          result = "unknown exception";
        }
      }
      // An empty report would look like success even if the write failed: mark success.
      std::string message = result.empty() ? "OK" : result;
      size_t off = 0;
      while (off < message.size()) {
        ssize_t n = ::write(report[1], message.data() + off, message.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::_exit(0);
    }
    ::close(start[0]);
    ::close(report[1]);
    start_fd_ = start[1];
    report_fd_ = report[0];
  }

  ~ForkedChild() {
    if (pid_ > 0 && !waited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (start_fd_ >= 0) ::close(start_fd_);
    if (report_fd_ >= 0) ::close(report_fd_);
  }
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;

  pid_t pid() const { return pid_; }

  void Start() {
    char go = 'g';
    ASSERT_EQ(::write(start_fd_, &go, 1), 1);
  }

  // Waits (at most `timeout`) for the child's report and exit. Returns "" when `body` succeeded,
  // else its message or how the child failed.
  std::string Wait(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::string report;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "child timed out";
      pollfd pfd{report_fd_, POLLIN, 0};
      int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return "child timed out";
      char buf[4096];
      ssize_t n = ::read(report_fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the child closed its end: it is exiting
      report.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    waited_ = true;
    if (WIFSIGNALED(status)) return "child killed by signal " + std::to_string(WTERMSIG(status));
    if (report == "OK") return "";
    return report.empty() ? "child sent no report" : report;
  }

 private:
  pid_t pid_ = -1;
  int start_fd_ = -1;
  int report_fd_ = -1;
  bool waited_ = false;
};

}  // namespace yunzhi::store::testing
