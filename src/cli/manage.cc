#include "cli/manage.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "cli/audit.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/platform/audit.h"
#include "yunzhi/platform/keyring.h"
#include "yunzhi/store/tenant_stores.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/tenants.h"

namespace yunzhi::cli {
namespace {

// Everything a management command needs, opened from the flags.
struct Session {
  Store store;
  std::unique_ptr<platform::Tenants> tenants;
  std::unique_ptr<platform::ApiKeys> keys;
  std::unique_ptr<platform::AuditLog> audit;
  Config config;
  std::optional<store::DataDir> dir;
};

// Appends an entry by this command's user; a failure is reported, not fatal (the change is made).
void AuditCli(Session& s, std::string tenant_id, std::string action, std::string target,
              std::string details_json = "{}") {
  auto st = s.audit->Append({.tenant_id = std::move(tenant_id),
                             .actor = CliActor(),
                             .action = std::move(action),
                             .target = std::move(target),
                             .details_json = std::move(details_json)});
  if (!st) std::fprintf(stderr, "warning: not audited: %s\n", st.error().message.c_str());
}

Result<Session> Open(const GlobalFlags& flags) {
  YZ_ASSIGN_OR_RETURN(auto loaded, LoadCliConfig(flags));
  YZ_ASSIGN_OR_RETURN(auto dir, store::DataDir::Open(loaded.config.data_dir));
  Session s;
  YZ_ASSIGN_OR_RETURN(s.store, OpenStore(loaded.config, dir));
  s.tenants = std::make_unique<platform::Tenants>(*s.store.db, *Clock::System());
  s.keys = std::make_unique<platform::ApiKeys>(*s.store.db, *s.tenants, *Clock::System());
  s.audit = std::make_unique<platform::AuditLog>(*s.store.db, *Clock::System());
  s.config = loaded.config;
  s.dir = dir;
  return s;
}

void PrintKeyRow(const platform::ApiKey& k, const std::string& tenant_name) {
  std::printf("%-30s  %-11s  %-12s  %-20s  %-16s  %-6s  %-19s  %-19s  %s\n", k.id.c_str(),
              k.prefix.c_str(), tenant_name.c_str(), k.name.substr(0, 20).c_str(),
              k.scopes.ToString().c_str(),
              k.requests_per_minute ? std::to_string(*k.requests_per_minute).c_str() : "-",
              FormatTime(k.created_at_ms).c_str(), FormatTime(k.last_used_at_ms).c_str(),
              k.active() ? "active" : ("revoked " + FormatTime(k.revoked_at_ms)).c_str());
}

}  // namespace

int RunKeysCreate(const GlobalFlags& flags, const KeyCreateFlags& create) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto scopes = platform::Scopes::Parse(create.scopes);
  if (!scopes) return PrintError(scopes.error());
  platform::KeyOptions options;
  options.name = create.name;
  options.scopes = *scopes;
  if (create.requests_per_minute != 0) options.requests_per_minute = create.requests_per_minute;
  const std::string tenant =
      create.tenant.empty() ? std::string(platform::kSystemTenantName) : create.tenant;
  auto created = s->keys->Create(tenant, options);
  if (!created) return PrintError(created.error());
  AuditCli(*s, created->key.tenant_id, "key.create", created->key.id,
           fmt::format(R"({{"prefix":"{}","scopes":"{}"}})", created->key.prefix,
                       created->key.scopes.ToString()));
  std::printf("%s\n", created->secret.c_str());
  std::fprintf(stderr, "Created key %s (%s) for tenant %s with scopes %s. It is shown only now.\n",
               created->key.id.c_str(), created->key.prefix.c_str(), tenant.c_str(),
               created->key.scopes.ToString().c_str());
  return 0;
}

int RunKeysList(const GlobalFlags& flags, const std::string& tenant) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto keys = s->keys->List(tenant);
  if (!keys) return PrintError(keys.error());
  auto tenants = s->tenants->List();
  if (!tenants) return PrintError(tenants.error());
  std::printf("%-30s  %-11s  %-12s  %-20s  %-16s  %-6s  %-19s  %-19s  %s\n", "ID", "PREFIX",
              "TENANT", "NAME", "SCOPES", "RPM", "CREATED (UTC)", "LAST USED (UTC)", "STATUS");
  std::map<std::string, std::string> tenant_names;
  for (const auto& t : *tenants) tenant_names[t.id] = t.name;
  for (const auto& k : *keys) PrintKeyRow(k, tenant_names[k.tenant_id]);
  return 0;
}

int RunKeysRevoke(const GlobalFlags& flags, const std::string& id_or_prefix) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto revoked = s->keys->Revoke(id_or_prefix);
  if (!revoked) return PrintError(revoked.error());
  AuditCli(*s, revoked->tenant_id, "key.revoke", revoked->id,
           fmt::format(R"({{"prefix":"{}"}})", revoked->prefix));
  std::printf("Revoked key %s (%s).\n", revoked->id.c_str(), revoked->prefix.c_str());
  return 0;
}

int RunTenantsCreate(const GlobalFlags& flags, const std::string& name) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto t = s->tenants->Create(name);
  if (!t) return PrintError(t.error());
  AuditCli(*s, t->id, "tenant.create", t->id, fmt::format(R"({{"name":"{}"}})", t->name));
  std::printf("%s\n", t->id.c_str());
  return 0;
}

int RunTenantsList(const GlobalFlags& flags) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto tenants = s->tenants->List();
  if (!tenants) return PrintError(tenants.error());
  std::printf("%-30s  %-24s  %-19s\n", "ID", "NAME", "CREATED (UTC)");
  for (const auto& t : *tenants) {
    std::printf("%-30s  %-24s  %-19s\n", t.id.c_str(),
                (t.name + (t.system ? " (system)" : "")).c_str(),
                FormatTime(t.created_at_ms).c_str());
  }
  return 0;
}

int RunTenantsDelete(const GlobalFlags& flags, const std::string& id_or_name) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto t = s->tenants->Find(id_or_name);
  if (!t) return PrintError(t.error());
  if (t->system) return PrintError(FailedPreconditionError("the system tenant cannot be deleted"));
  // Crypto-shredding first, as the server does: the tenant's data key goes before its rows.
  auto keyring = platform::Keyring::Open(*s->store.db, KeyringOptionsFor(s->config, *s->dir));
  if (!keyring) return PrintError(keyring.error());
  if (auto st = (*keyring)->DestroyTenantKey(t->id); !st) return PrintError(st.error());
  if (auto st = s->tenants->Delete(t->id); !st) return PrintError(st.error());
  // The tenant's knowledge stores (<data_dir>/tenants/<id>/); a running server that still has
  // them open keeps valid handles to deleted files until it notices.
  if (store::TenantStores::IsValidTenantId(t->id)) {
    std::error_code ec;
    std::filesystem::remove_all(s->dir->path() / "tenants" / t->id, ec);
    if (ec) std::fprintf(stderr, "warning: could not remove the tenant's data: %s\n",
                         ec.message().c_str());
  }
  AuditCli(*s, t->id, "tenant.delete", t->id,
           fmt::format(R"({{"name":"{}","key_destroyed":true}})", t->name));
  std::printf("Deleted tenant %s, its keys, its encryption key and its data.\n",
              id_or_name.c_str());
  return 0;
}

int RunConfigShow(const GlobalFlags& flags) {
  auto loaded = LoadCliConfig(flags);
  if (!loaded) return PrintError(loaded.error());
  std::printf("%s", RenderEffectiveConfig(*loaded).c_str());
  return 0;
}

}  // namespace yunzhi::cli
