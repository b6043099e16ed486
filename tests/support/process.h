// Runs the `yunzhi` binary (or any program) as a child process for whole-program tests:
// captured stdout/stderr, signals, waiting with deadlines (never a blind sleep).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace yunzhi::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs a program to completion (killed after `timeout`). `env` entries are added to (and override)
// the inherited environment.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv,
               const std::map<std::string, std::string>& env = {});
  ~ChildProcess();  // SIGKILLs the child if it still runs
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stdout until `predicate(all stdout so far)` holds, the child exits, or the timeout.
  // Returns whether the predicate held.
  bool WaitForOutput(const std::function<bool(const std::string&)>& predicate,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Signal(int sig);
  // Waits for exit; returns the exit code (128+signal), or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void Pump(std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_, err_;
  std::optional<int> exit_code_;
};

// A fresh empty directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace yunzhi::testing
