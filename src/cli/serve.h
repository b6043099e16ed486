#pragma once

#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct ServeFlags {
  std::string host;  // empty: from config
  int port = -1;     // < 0: from config
};

// Runs the server until SIGINT/SIGTERM; returns the process exit code.
int RunServe(const GlobalFlags& flags, const ServeFlags& serve);

}  // namespace yunzhi::cli
