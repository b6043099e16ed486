// Management subcommands that work directly on a data dir, whether or not a server runs on it
// (SQLite's own locking keeps them safe beside a running server).
#pragma once

#include <optional>
#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct KeyCreateFlags {
  std::string tenant;  // empty: the system tenant
  std::string name;
  std::string scopes = "inference";
  int64_t requests_per_minute = 0;  // 0: platform default
};

int RunKeysCreate(const GlobalFlags& flags, const KeyCreateFlags& create);
int RunKeysList(const GlobalFlags& flags, const std::string& tenant);
int RunKeysRevoke(const GlobalFlags& flags, const std::string& id_or_prefix);

int RunTenantsCreate(const GlobalFlags& flags, const std::string& name);
int RunTenantsList(const GlobalFlags& flags);
int RunTenantsDelete(const GlobalFlags& flags, const std::string& id_or_name);

// `yunzhi config show`: the effective configuration and where each value came from.
int RunConfigShow(const GlobalFlags& flags);

}  // namespace yunzhi::cli
