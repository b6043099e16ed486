// The `yunzhi` command: thin wiring of subcommands to the modules.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/common.h"
#include "cli/manage.h"
#include "cli/serve.h"
#include "yunzhi/base/version.h"

int main(int argc, char** argv) {
  using namespace yunzhi::cli;
  CLI::App app{"Yunzhi: models as a service on your own machines."};
  app.require_subcommand(1);

  GlobalFlags flags;
  // Accepted before and after the subcommand's name, and listed in every --help.
  auto add_global_flags = [&flags](CLI::App* cmd) {
    cmd->add_option("--config", flags.config_file, "TOML configuration file (or YUNZHI_CONFIG)");
    cmd->add_option("--data-dir", flags.data_dir,
                    "Data directory (default: config `data_dir`, YUNZHI_DATA_DIR, else ./data)");
    cmd->add_option("--log-level", flags.log_level, "debug | info | warn | error | off");
  };
  add_global_flags(&app);

  int exit_code = 0;

  ServeFlags serve_flags;
  auto* serve = app.add_subcommand("serve", "Run the platform: API server on the data dir");
  serve->add_option("--host", serve_flags.host, "Address to listen on (default 127.0.0.1)");
  serve->add_option("--port", serve_flags.port, "Port to listen on, 0 for any (default 8080)")
      ->check(CLI::Range(0, 65535));
  serve->callback([&] { exit_code = RunServe(flags, serve_flags); });

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] {
    std::printf("yunzhi %s (%s)\n", yunzhi::kVersion, yunzhi::kBuildType);
  });

  auto* keys = app.add_subcommand("keys", "Manage API keys on the data dir");
  keys->require_subcommand(1);
  KeyCreateFlags create_flags;
  auto* keys_create = keys->add_subcommand("create", "Create a key; prints it once on stdout");
  keys_create->add_option("--tenant", create_flags.tenant, "Tenant id or name (default: system)");
  keys_create->add_option("--name", create_flags.name, "A label for the key");
  keys_create->add_option("--scopes", create_flags.scopes,
                          "Comma-separated: admin, inference, read (default: inference)");
  keys_create->add_option("--rpm", create_flags.requests_per_minute,
                          "Requests per minute for this key (default: platform default)")
      ->check(CLI::PositiveNumber);
  keys_create->callback([&] { exit_code = RunKeysCreate(flags, create_flags); });
  std::string list_tenant;
  auto* keys_list = keys->add_subcommand("list", "List keys (never their secrets)");
  keys_list->add_option("--tenant", list_tenant, "Only this tenant's keys");
  keys_list->callback([&] { exit_code = RunKeysList(flags, list_tenant); });
  std::string revoke_id;
  auto* keys_revoke = keys->add_subcommand("revoke", "Revoke a key by id or prefix");
  keys_revoke->add_option("key", revoke_id, "Key id (key_...) or prefix (yz-...)")->required();
  keys_revoke->callback([&] { exit_code = RunKeysRevoke(flags, revoke_id); });

  auto* tenants = app.add_subcommand("tenants", "Manage tenants on the data dir");
  tenants->require_subcommand(1);
  std::string tenant_name;
  auto* tenants_create = tenants->add_subcommand("create", "Create a tenant; prints its id");
  tenants_create->add_option("name", tenant_name, "Lowercase letters, digits, - and _")->required();
  tenants_create->callback([&] { exit_code = RunTenantsCreate(flags, tenant_name); });
  tenants->add_subcommand("list", "List tenants")->callback([&] {
    exit_code = RunTenantsList(flags);
  });
  std::string delete_tenant;
  auto* tenants_delete = tenants->add_subcommand("delete", "Delete a tenant and its keys");
  tenants_delete->add_option("tenant", delete_tenant, "Tenant id or name")->required();
  tenants_delete->callback([&] { exit_code = RunTenantsDelete(flags, delete_tenant); });

  auto* config = app.add_subcommand("config", "Inspect the configuration");
  config->require_subcommand(1);
  config->add_subcommand("show", "Print the effective configuration and where each value comes from")
      ->callback([&] { exit_code = RunConfigShow(flags); });

  for (CLI::App* cmd : app.get_subcommands({})) {
    add_global_flags(cmd);
    for (CLI::App* sub : cmd->get_subcommands({})) add_global_flags(sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
