#include "cli/audit.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/clock.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/data_dir.h"

namespace yunzhi::cli {

std::string CliActor() {
  const char* user = std::getenv("USER");
  std::string name = user != nullptr ? user : "";
  if (name.empty()) {
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
      name = pw->pw_name;
    } else {
      name = std::to_string(::geteuid());
    }
  }
  return "cli:" + name;
}

platform::KeyringOptions KeyringOptionsFor(const Config& config, const store::DataDir& dir) {
  platform::KeyringOptions o;
  o.master_key_file = config.security.master_key_file.empty()
                          ? dir.path() / "master.key"
                          : std::filesystem::path(config.security.master_key_file);
  if (const char* env = std::getenv(std::string(platform::kMasterKeyEnvVar).c_str());
      env != nullptr && *env != '\0') {
    o.master_key_hex = env;
  }
  return o;
}

int RunAuditVerify(const GlobalFlags& flags) {
  auto loaded = LoadCliConfig(flags);
  if (!loaded) return PrintError(loaded.error());
  auto dir = store::DataDir::Open(loaded->config.data_dir);
  if (!dir) return PrintError(dir.error());
  auto store = OpenStore(loaded->config, *dir);
  if (!store) return PrintError(store.error());
  platform::AuditLog audit(*store->db, *Clock::System());
  auto v = audit.Verify();
  if (!v) return PrintError(v.error());
  if (v->intact) {
    std::printf("audit log intact: %lld entries (last hash %s)\n",
                static_cast<long long>(v->n_entries), v->last_hash.c_str());
    return 0;
  }
  std::printf("audit log TAMPERED: first bad entry is seq %lld: %s\n",
              static_cast<long long>(v->first_bad_seq), v->problem.c_str());
  return 1;
}

int RunAuditList(const GlobalFlags& flags, const AuditListFlags& list) {
  auto loaded = LoadCliConfig(flags);
  if (!loaded) return PrintError(loaded.error());
  auto dir = store::DataDir::Open(loaded->config.data_dir);
  if (!dir) return PrintError(dir.error());
  auto store = OpenStore(loaded->config, *dir);
  if (!store) return PrintError(store.error());
  platform::AuditFilter f;
  if (!list.tenant.empty()) {
    platform::Tenants tenants(*store->db, *Clock::System());
    auto t = tenants.Find(list.tenant);
    f.tenant_id = t ? t->id : list.tenant;  // a deleted tenant by its id
  }
  if (!list.actor.empty()) f.actor = list.actor;
  if (!list.action.empty()) f.action = list.action;
  if (list.from_s >= 0) f.from_ms = list.from_s * 1000;
  if (list.to_s >= 0) f.to_ms = list.to_s * 1000 + 999;
  f.limit = list.limit;
  f.after_seq = list.after;
  platform::AuditLog audit(*store->db, *Clock::System());
  auto entries = audit.Query(f);
  if (!entries) return PrintError(entries.error());
  if (list.json) {
    boost::json::array data;
    for (const auto& e : *entries) {
      boost::system::error_code ec;
      boost::json::value details = boost::json::parse(e.details_json, ec);
      if (ec) details = e.details_json;
      data.push_back(boost::json::object{{"seq", e.seq},
                                         {"time_ms", e.time_ms},
                                         {"tenant_id", e.tenant_id},
                                         {"actor", e.actor},
                                         {"action", e.action},
                                         {"target", e.target},
                                         {"details", std::move(details)},
                                         {"prev_hash", e.prev_hash},
                                         {"hash", e.hash}});
    }
    std::printf("%s\n", boost::json::serialize(data).c_str());
    return 0;
  }
  std::printf("%-6s  %-19s  %-30s  %-30s  %-16s  %-30s  %s\n", "SEQ", "TIME (UTC)", "TENANT",
              "ACTOR", "ACTION", "TARGET", "DETAILS");
  for (const auto& e : *entries) {
    std::printf("%-6lld  %-19s  %-30s  %-30s  %-16s  %-30s  %s\n", static_cast<long long>(e.seq),
                FormatTime(e.time_ms).c_str(), e.tenant_id.empty() ? "-" : e.tenant_id.c_str(),
                e.actor.c_str(), e.action.c_str(), e.target.c_str(), e.details_json.c_str());
  }
  return 0;
}

int RunKeysRotateMaster(const GlobalFlags& flags) {
  auto loaded = LoadCliConfig(flags);
  if (!loaded) return PrintError(loaded.error());
  auto dir = store::DataDir::Open(loaded->config.data_dir);
  if (!dir) return PrintError(dir.error());
  // Held for the whole rotation: no server may start on the data dir meanwhile.
  auto lock = store::ServerLock::Acquire(*dir);
  if (!lock) {
    return PrintError(FailedPreconditionError(
        fmt::format("cannot rotate the master key while a server runs: {}; stop it first",
                    lock.error().message)));
  }
  auto store = OpenStore(loaded->config, *dir);
  if (!store) return PrintError(store.error());
  const platform::KeyringOptions options = KeyringOptionsFor(loaded->config, *dir);
  auto keyring = platform::Keyring::Open(*store->db, options);
  if (!keyring) return PrintError(keyring.error());
  if (auto s = (*keyring)->RotateMaster(platform::Keyring::GenerateMasterKey()); !s) {
    return PrintError(s.error());
  }
  platform::AuditLog audit(*store->db, *Clock::System());
  if (auto s = audit.Append({.tenant_id = "",
                             .actor = CliActor(),
                             .action = "keys.rotate_master",
                             .target = options.master_key_file.string(),
                             .details_json = "{}"});
      !s) {
    std::fprintf(stderr, "warning: the rotation was not audited: %s\n", s.error().message.c_str());
  }
  std::printf("Rotated the master key: every tenant key is rewrapped and %s holds the new key.\n"
              "Back the new key file up now; the old key no longer opens this data dir.\n",
              options.master_key_file.string().c_str());
  return 0;
}

}  // namespace yunzhi::cli
