// `yunzhi audit verify|list` (the audit log on the data dir) and `yunzhi keys rotate-master`,
// plus the helpers the other commands use to audit their changes and to open the keyring.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cli/common.h"
#include "yunzhi/platform/audit.h"
#include "yunzhi/platform/keyring.h"

namespace yunzhi::cli {

struct AuditListFlags {
  bool json = false;
  std::string tenant;  // id or name; empty: all
  std::string actor;
  std::string action;
  int64_t from_s = -1;  // unix seconds; -1: unbounded
  int64_t to_s = -1;
  int64_t limit = 100;
  int64_t after = 0;
};

// Exit 0 and "audit log intact: N entries", or exit 1 naming the first bad entry.
int RunAuditVerify(const GlobalFlags& flags);
int RunAuditList(const GlobalFlags& flags, const AuditListFlags& list);

// Rewraps every tenant key under a new random master key and replaces the key file. Refuses
// (exit 1) while a server holds the data dir: the server keeps the old master key in memory.
int RunKeysRotateMaster(const GlobalFlags& flags);

// "cli:<user>": the actor of entries appended by management commands.
std::string CliActor();

// The keyring settings of `config`: security.master_key_file (default <data_dir>/master.key)
// and YUNZHI_MASTER_KEY from the process environment when set.
platform::KeyringOptions KeyringOptionsFor(const Config& config, const store::DataDir& dir);

}  // namespace yunzhi::cli
