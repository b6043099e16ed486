// What every `yunzhi` subcommand shares: global flags, configuration loading, opening the data
// dir and its store, and printing errors.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "yunzhi/base/config.h"
#include "yunzhi/base/status.h"
#include "yunzhi/store/data_dir.h"
#include "yunzhi/store/database.h"

namespace yunzhi::cli {

// Flags accepted by every subcommand (before or after its name).
struct GlobalFlags {
  std::string config_file;
  std::string data_dir;   // empty: from config/env, else ./data
  std::string log_level;  // empty: from config
};

// Loads the configuration: defaults < file < YUNZHI_* environment < flags. `overrides` are extra
// flag values as (dotted key, value).
Result<LoadedConfig> LoadCliConfig(const GlobalFlags& flags,
                                   std::vector<std::pair<std::string, std::string>> overrides = {});

// The data dir's metadata store, schema up to date, system tenant present.
struct Store {
  std::unique_ptr<store::Database> db;
};
Result<Store> OpenStore(const Config& config, const store::DataDir& dir);

// Prints "error: <message>" to stderr and returns the process exit code for the error.
int PrintError(const Error& error);

// Formats a Unix time in ms as "2026-11-25 01:02:03" UTC, or "-" for none.
std::string FormatTime(std::optional<int64_t> unix_ms);

}  // namespace yunzhi::cli
