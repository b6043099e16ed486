// The `yunzhi` command: thin wiring of subcommands to the modules.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/audit.h"
#include "cli/common.h"
#include "cli/kb.h"
#include "cli/manage.h"
#include "cli/models.h"
#include "cli/ps.h"
#include "cli/quantize.h"
#include "cli/run.h"
#include "cli/serve.h"
#include "cli/usage.h"
#include "yunzhi/base/version.h"
#include "yunzhi/engine/quantize.h"

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
  keys->add_subcommand("rotate-master",
                       "Rewrap every tenant's encryption key under a new master key (server "
                       "stopped)")
      ->callback([&] { exit_code = RunKeysRotateMaster(flags); });

  auto* audit = app.add_subcommand("audit", "Check and read the tamper-evident audit log");
  audit->require_subcommand(1);
  audit->add_subcommand("verify", "Walk the hash chain; exit 1 naming the first bad entry")
      ->callback([&] { exit_code = RunAuditVerify(flags); });
  AuditListFlags audit_flags;
  auto* audit_list = audit->add_subcommand("list", "List audit entries, oldest first");
  audit_list->add_flag("--json", audit_flags.json, "Print JSON");
  audit_list->add_option("--tenant", audit_flags.tenant, "Tenant id or name (default: all)");
  audit_list->add_option("--actor", audit_flags.actor, "Key id, cli:<user> or system");
  audit_list->add_option("--action", audit_flags.action, "e.g. key.create, document.upload");
  audit_list->add_option("--from", audit_flags.from_s, "Unix seconds, inclusive")
      ->check(CLI::NonNegativeNumber);
  audit_list->add_option("--to", audit_flags.to_s, "Unix seconds, inclusive")
      ->check(CLI::NonNegativeNumber);
  audit_list->add_option("--limit", audit_flags.limit, "Most entries (default 100)")
      ->check(CLI::Range(1, 10000));
  audit_list->add_option("--after", audit_flags.after, "Only entries after this seq (paging)")
      ->check(CLI::NonNegativeNumber);
  audit_list->callback([&] { exit_code = RunAuditList(flags, audit_flags); });

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
  bench->add_option("-b,--batch", bench_flags.batch,
                    "Sequences decoded together in the generation test (aggregate tokens/s)")
      ->check(CLI::Range(1, 256));
  bench->add_option("-n,--gen-tokens", bench_flags.gen_tokens, "Tokens to generate (0: skip)");
  bench->add_option("-r,--repetitions", bench_flags.repetitions, "Repetitions of each test");
  bench->add_option("-d,--depth", bench_flags.depth,
                    "Tokens already in the context when each test starts (filled untimed)")
      ->check(CLI::NonNegativeNumber);
  bench->add_flag("--bandwidth", bench_flags.bandwidth,
                  "Also measure memory read bandwidth and print generation as a share of it");
  bench->add_option("--isa", bench_flags.isa,
                    "Kernels to run: avx512 | avx2 | scalar (default: the best this CPU has)")
      ->check(CLI::IsMember({"avx512", "avx2", "scalar"}));
  bench->callback([&] { exit_code = RunBench(bench_flags); });

  QuantizeFlags quantize_flags;
  auto* quantize = app.add_subcommand("quantize", "Quantise a model to a GGUF file");
  quantize->add_option("in", quantize_flags.in_path, "GGUF file or Hugging Face directory")
      ->required();
  quantize->add_option("out", quantize_flags.out_path, "Output .gguf file")->required();
  quantize->add_option("--type", quantize_flags.type, yunzhi::engine::QuantizeTargetNames());
  quantize->add_flag("-q,--quiet", quantize_flags.quiet, "No per-tensor progress");
  quantize->callback([&] { exit_code = RunQuantize(flags, quantize_flags); });

  UsageFlags usage_flags;
  auto* usage = app.add_subcommand("usage", "Usage records summed by day, model or key");
  usage->add_option("--tenant", usage_flags.tenant, "Tenant id or name (default: every tenant)");
  usage->add_option("--from", usage_flags.from, "First day, YYYY-MM-DD UTC (default: this month)");
  usage->add_option("--to", usage_flags.to, "Last day, YYYY-MM-DD UTC, inclusive");
  usage->add_option("--group-by", usage_flags.group_by, "day | model | key")
      ->check(CLI::IsMember({"day", "model", "key"}));
  usage->add_flag("--csv", usage_flags.csv, "Print CSV");
  usage->callback([&] { exit_code = RunUsage(flags, usage_flags); });

  // Knowledge spaces.
  auto* kb = app.add_subcommand("kb", "Knowledge spaces: create, add documents, search, evaluate");
  kb->require_subcommand(1);
  KbFlags kb_flags;
  auto* kb_create = kb->add_subcommand("create", "Create a knowledge space; prints its id");
  kb_create->add_option("space", kb_flags.space, "Space name")->required();
  kb_create->add_option("--description", kb_flags.description, "What the space holds");
  kb_create->add_option("--embedding-model", kb_flags.embedding_model,
                        "An imported embedding model (default: lexical retrieval only)");
  kb_create->add_option("--chunk-size", kb_flags.chunk_size, "Chunk size in tokens (default 400)");
  kb_create->add_option("--chunk-overlap", kb_flags.chunk_overlap, "Overlap in tokens (default 50)");
  kb_create->callback([&] { exit_code = RunKbCreate(flags, kb_flags); });
  auto* kb_list = kb->add_subcommand("list", "List spaces, or the documents of SPACE");
  kb_list->add_option("space", kb_flags.space, "Space name or id");
  kb_list->callback([&] { exit_code = RunKbList(flags, kb_flags); });
  auto* kb_add = kb->add_subcommand("add", "Ingest files (directories recursively) into a space");
  kb_add->add_option("space", kb_flags.space, "Space name or id")->required();
  kb_add->add_option("files", kb_flags.files, "Files or directories")->required();
  kb_add->callback([&] { exit_code = RunKbAdd(flags, kb_flags); });
  auto* kb_search = kb->add_subcommand("search", "Search a space");
  kb_search->add_option("space", kb_flags.space, "Space name or id")->required();
  kb_search->add_option("query", kb_flags.query, "What to look for")->required();
  kb_search->add_option("--top-k", kb_flags.top_k, "Hits to show (default 5)");
  kb_search->add_option("--mode", kb_flags.mode, "auto | lexical | vector | hybrid");
  kb_search->callback([&] { exit_code = RunKbSearch(flags, kb_flags); });
  auto* kb_rm = kb->add_subcommand("rm", "Remove a space, or one document of it");
  kb_rm->add_option("space", kb_flags.space, "Space name or id")->required();
  kb_rm->add_option("document", kb_flags.document, "Document id");
  kb_rm->callback([&] { exit_code = RunKbRemove(flags, kb_flags); });
  for (CLI::App* sub : {kb_create, kb_list, kb_add, kb_search, kb_rm}) {
    sub->add_option("--tenant", kb_flags.tenant, "Tenant id or name (default: system)");
  }
  KbEvalFlags eval_flags;
  auto* kb_eval = kb->add_subcommand(
      "eval", "Retrieval quality on a BEIR collection: nDCG@10, recall@10/100, MRR@10, latency");
  kb_eval->add_option("--corpus", eval_flags.corpus, "corpus.jsonl");
  kb_eval->add_option("--queries", eval_flags.queries, "queries.jsonl");
  kb_eval->add_option("--qrels", eval_flags.qrels, "qrels .tsv");
  kb_eval->add_option("--squad", eval_flags.squad,
                      "Instead: a SQuAD-layout JSON (each question's paragraph is relevant)");
  kb_eval->add_option("--embedding-model", eval_flags.embedding_model, "Also index vectors");
  kb_eval->add_option("--mode", eval_flags.mode, "auto | lexical | vector | hybrid");
  kb_eval->add_option("--chunk-size", eval_flags.chunk_size, "Chunk size in tokens (default 400)");
  kb_eval->callback([&] {
    if (eval_flags.squad.empty() &&
        (eval_flags.corpus.empty() || eval_flags.queries.empty() || eval_flags.qrels.empty())) {
      std::fprintf(stderr, "error: give --corpus, --queries and --qrels, or --squad\n");
      exit_code = 2;
      return;
    }
    exit_code = RunKbEval(flags, eval_flags);
  });

  // Derived models.
  auto* model = app.add_subcommand("model", "Derived models: a parent model plus instructions and knowledge");
  model->require_subcommand(1);
  ModelCreateFlags mc_flags;
  auto* model_create = model->add_subcommand("create", "Create a derived model");
  model_create->add_option("name", mc_flags.name, "The new model's name")->required();
  model_create->add_option("--parent", mc_flags.parent, "Base or derived model")->required();
  model_create->add_option("--instructions", mc_flags.instructions, "System instructions");
  model_create->add_option("--instructions-file", mc_flags.instructions_file, "... from a file");
  model_create->add_option("--space", mc_flags.spaces, "Knowledge space to retrieve from (repeat)");
  model_create->add_option("--top-k", mc_flags.top_k, "Passages retrieved per question (default 4)");
  model_create->add_option("--description", mc_flags.description, "What the model is for");
  model_create->add_option("--tenant", mc_flags.tenant, "Tenant id or name (default: system)");
  model_create->callback([&] { exit_code = RunModelCreate(flags, mc_flags); });

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
