// The `yunzhi` command: thin wiring of subcommands to the modules.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/common.h"
#include "cli/manage.h"
#include "cli/models.h"
#include "cli/ps.h"
#include "cli/quantize.h"
#include "cli/run.h"
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

  ImportFlags import_flags;
  auto* import = app.add_subcommand("import", "Import a GGUF file or Hugging Face directory");
  import->add_option("path", import_flags.path, ".gguf file or Hugging Face model directory")
      ->required();
  import->add_option("--name", import_flags.name,
                     "[namespace/]name[:tag] (default: from the file or directory name)");
  import->add_flag("--replace", import_flags.replace, "Replace a model of the same name");
  import->callback([&] { exit_code = RunImport(flags, import_flags); });
  app.add_subcommand("list", "List the imported models")->callback([&] {
    exit_code = RunList(flags);
  });
  std::string show_name;
  bool show_json = false;
  auto* show = app.add_subcommand("show", "Show a model's metadata and files");
  show->add_option("name", show_name, "Model name or id")->required();
  show->add_flag("--json", show_json, "Print JSON");
  show->callback([&] { exit_code = RunShow(flags, show_name, show_json); });
  std::string rm_name;
  auto* rm = app.add_subcommand("rm", "Remove a model (its files go unless another model shares them)");
  rm->add_option("name", rm_name, "Model name or id")->required();
  rm->callback([&] { exit_code = RunRemove(flags, rm_name); });
  PsFlags ps_flags;
  auto* ps = app.add_subcommand("ps", "Show the models a running server has loaded");
  ps->add_option("--url", ps_flags.url,
                 "Server URL (default: the server running on the data dir)");
  ps->add_option("--api-key", ps_flags.api_key, "API key with the read scope (default: $YUNZHI_API_KEY)");
  ps->add_flag("--json", ps_flags.json, "Print the server's JSON");
  ps->callback([&] { exit_code = RunPs(flags, ps_flags); });

  RunFlags run_flags;
  auto* run = app.add_subcommand("run", "Chat with a model in the terminal, or complete a prompt");
  run->add_option("model", run_flags.model, ".gguf file or Hugging Face model directory")
      ->required();
  run->add_option("prompt", run_flags.prompt, "One message to answer (default: interactive chat)");
  run->add_option("--system", run_flags.system, "System message");
  run->add_flag("--raw", run_flags.raw, "Complete the prompt as plain text (no chat template)");
  run->add_option("-t,--threads", run_flags.threads, "Compute threads (default: all cores)");
  run->add_option("-n,--max-tokens", run_flags.max_tokens, "Most tokens to generate");
  run->add_option("-c,--ctx", run_flags.n_ctx, "Context length in tokens");
  run->add_option("--temp", run_flags.temperature, "Temperature (0: greedy)");
  run->add_option("--top-p", run_flags.top_p, "Nucleus sampling threshold");
  run->add_option("--top-k", run_flags.top_k, "Keep the k most likely tokens (0: all)");
  run->add_option("--min-p", run_flags.min_p, "Drop tokens below min-p times the best");
  run->add_option("--repeat-penalty", run_flags.repeat_penalty, "Repetition penalty (1: off)");
  run->add_option("--seed", run_flags.seed, "Sampling seed (default: random)");
  run->callback([&] { exit_code = RunRun(run_flags); });

  BenchFlags bench_flags;
  auto* bench = app.add_subcommand(
      "bench", "Measure prompt processing (pp) and generation (tg) speed of a model");
  bench->add_option("model", bench_flags.model, ".gguf file or Hugging Face model directory")
      ->required();
  bench->add_option("-t,--threads", bench_flags.threads, "Compute threads (default: all cores)");
  bench->add_option("-p,--prompt-tokens", bench_flags.prompt_tokens, "Prompt length (0: skip)");
  bench->add_option("-n,--gen-tokens", bench_flags.gen_tokens, "Tokens to generate (0: skip)");
  bench->add_option("-r,--repetitions", bench_flags.repetitions, "Repetitions of each test");
  bench->add_flag("--bandwidth", bench_flags.bandwidth,
                  "Also measure memory read bandwidth and print generation as a share of it");
  bench->callback([&] { exit_code = RunBench(bench_flags); });

  QuantizeFlags quantize_flags;
  auto* quantize = app.add_subcommand("quantize", "Quantise a model to a GGUF file");
  quantize->add_option("in", quantize_flags.in_path, "GGUF file or Hugging Face directory")
      ->required();
  quantize->add_option("out", quantize_flags.out_path, "Output .gguf file")->required();
  quantize->add_option("--type", quantize_flags.type, "q8_0 | q4_0 | q4_k_m");
  quantize->add_flag("-q,--quiet", quantize_flags.quiet, "No per-tensor progress");
  quantize->callback([&] { exit_code = RunQuantize(flags, quantize_flags); });

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
