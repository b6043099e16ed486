// `yunzhi ps`: the models a running server has loaded, like `ollama ps`.
#pragma once

#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct PsFlags {
  std::string url;      // empty: the server running on the data dir (its lock file names it)
  std::string api_key;  // empty: $YUNZHI_API_KEY
  bool json = false;
};

// Asks the server (GET /api/ps, a `read` key) and prints a table: NAME, SIZE, CONTEXT, ACTIVE,
// RUNNING, WAITING, KV USED, UNTIL.
int RunPs(const GlobalFlags& flags, const PsFlags& ps);

}  // namespace yunzhi::cli
