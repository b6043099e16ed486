// `yunzhi serve`: the whole platform in one process on the embedded default store.
#include "cli/serve.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "yunzhi/api/app.h"
#include "yunzhi/api/http_server.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/log.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/serving/model_manager.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/data_dir.h"
#include "cli/knowledge_stack.h"
#include "cli/audit.h"
#include "yunzhi/platform/audit.h"
#include "yunzhi/platform/keyring.h"

namespace yunzhi::cli {
namespace {

// Prints the platform admin key the first time a data dir is served.
Status EnsureAdminKey(platform::ApiKeys& keys, platform::Tenants& tenants) {
  YZ_ASSIGN_OR_RETURN(bool has_admin, keys.HasActivePlatformAdminKey());
  if (has_admin) return OkStatus();
  YZ_ASSIGN_OR_RETURN(auto system, tenants.Find(platform::kSystemTenantName));  // OpenStore made it
  platform::KeyOptions options;
  options.name = "platform admin (created at first start)";
  options.scopes = platform::Scopes::Of({platform::Scope::kAdmin});
  YZ_ASSIGN_OR_RETURN(auto created, keys.Create(system.id, options));
  std::printf(
      "Created the platform admin API key. It is shown only now; keep it somewhere safe:\n\n"
      "    %s\n\n",
      created.secret.c_str());
  std::fflush(stdout);
  return OkStatus();
}

}  // namespace

int RunServe(const GlobalFlags& flags, const ServeFlags& serve) {
  // Signals are taken synchronously by this thread (sigwait), so block them before any other
  // thread exists: every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<std::pair<std::string, std::string>> overrides;
  if (!serve.host.empty()) overrides.emplace_back("server.host", serve.host);
  if (serve.port >= 0) overrides.emplace_back("server.port", std::to_string(serve.port));
  auto loaded = LoadCliConfig(flags, overrides);
  if (!loaded) return PrintError(loaded.error());
  const Config& config = loaded->config;

  if (auto s = log::Init(config.LogOptions()); !s) return PrintError(s.error());

  auto dir = store::DataDir::Open(config.data_dir);
  if (!dir) return PrintError(dir.error());
  auto lock = store::ServerLock::Acquire(*dir);
  if (!lock) return PrintError(lock.error());
  auto store = OpenStore(config, *dir);
  if (!store) return PrintError(store.error());
  // The keyring right after the store: a wrong or missing master key stops the start here,
  // before anything else writes to the data dir.
  auto keyring = platform::Keyring::Open(*store->db, KeyringOptionsFor(config, *dir));
  if (!keyring) return PrintError(keyring.error());
  if ((*keyring)->generated_master_key()) {
    std::fprintf(stderr,
                 "Created the master encryption key %s. Back it up apart from the data dir: "
                 "without it no tenant's encrypted data can be read.\n",
                 (*keyring)->master_key_source().c_str());
  }
  platform::AuditLog audit_log(*store->db, *Clock::System());

  const Clock& clock = *Clock::System();
  platform::Tenants tenants(*store->db, clock);
  platform::ApiKeys keys(*store->db, tenants, clock);
  platform::RateLimiter limiter(clock);
  metrics::Registry registry;
  if (auto s = EnsureAdminKey(keys, tenants); !s) return PrintError(s.error());
  // Metering and billing outlive the request workers and the models: a request finishing during
  // shutdown still records its usage.
  // A usage record's charge is applied to the accounts in the transaction that inserts it.
  platform::MeterOptions meter_options;
  meter_options.apply_charge = &platform::Billing::ApplyCharge;
  auto meter = platform::Meter::Open(*store->db, (dir->path() / "usage.journal").string(), clock,
                                     std::move(meter_options));
  if (!meter) return PrintError(meter.error());
  platform::BillingOptions billing_options;
  billing_options.currency = config.billing.currency;
  auto trial_credit = platform::Money::Parse(config.billing.trial_credit);
  if (!trial_credit) {
    return PrintError(InvalidArgumentError("billing.trial_credit: " + trial_credit.error().message));
  }
  billing_options.trial_credit = *trial_credit;
  billing_options.trial_days = config.billing.trial_days;
  // Storage quotas count the bytes under the tenant's directory (set once the stores are open).
  store::TenantStores* tenant_stores = nullptr;
  billing_options.stored_bytes = [&tenant_stores](std::string_view tenant_id) -> Result<int64_t> {
    if (tenant_stores == nullptr || !store::TenantStores::IsValidTenantId(tenant_id)) return 0;
    std::error_code ec;
    int64_t total = 0;
    const auto root = tenant_stores->DirOf(tenant_id);
    if (!std::filesystem::exists(root, ec)) return 0;
    for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) total += static_cast<int64_t>(it->file_size(ec));
    }
    return total;
  };
  platform::Billing billing(*store->db, clock, billing_options);
  auto blobs = store::BlobStore::Open(dir->blobs_path());
  if (!blobs) return PrintError(blobs.error());
  auto models = hub::Registry::Open(*store->db, **blobs, dir->models_path(), clock);
  if (!models) return PrintError(models.error());
  hub::Registry* hub_registry = models->get();
  serving::ServingOptions serving_options;
  serving_options.n_threads = config.serving.threads;
  serving_options.n_ctx = config.serving.context_tokens;
  serving_options.kv_cache_tokens = config.serving.kv_cache_tokens;
  serving_options.memory_budget_bytes = config.serving.memory_budget_mb << 20;
  serving_options.default_keep_alive_ms =
      config.serving.keep_alive_s < 0 ? -1 : config.serving.keep_alive_s * 1000;
  serving_options.scheduler.max_running = config.serving.max_running;
  serving_options.scheduler.max_waiting = config.serving.max_waiting;
  serving_options.scheduler.max_step_tokens =
      std::max<int64_t>(config.serving.max_step_tokens, config.serving.max_running + 1);
  serving_options.scheduler.prefix_caching = config.serving.prefix_caching != 0;
  serving::ModelManager model_manager(
      [hub_registry](std::string_view name) -> Result<serving::ModelSource> {
        YZ_ASSIGN_OR_RETURN(hub::ModelInfo info, hub_registry->Find(name));
        return serving::ModelSource{info.name, info.id, info.path, info.keep_alive_ms};
      },
      serving_options, &registry, clock);
  ThreadPool request_workers(static_cast<size_t>(config.serving.request_threads), "requests");

  // Knowledge spaces and derived models: per-tenant stores under <data_dir>/tenants.
  auto system_tenant = tenants.Find(platform::kSystemTenantName);
  if (!system_tenant) return PrintError(system_tenant.error());
  KnowledgeStackOptions knowledge_options;
  knowledge_options.models = &model_manager;
  knowledge_options.system_tenant_id = system_tenant->id;
  // Documents, chunks and vectors are sealed with their tenant's data key (crypto-shredded
  // when the tenant is deleted).
  knowledge_options.ciphers = [kr = keyring->get()](std::string_view tenant_id) {
    return kr->ForTenant(tenant_id);
  };
  knowledge_options.base_exists = [hub_registry](std::string_view name) {
    return hub_registry->Find(name).has_value();
  };
  // Every ingested document is metered once (bytes, pages, OCR pages), idempotently by its id,
  // and its OCR pages are charged to the tenant's balance.
  knowledge_options.on_document_done = [m = meter->get(), b = config.billing.enabled != 0 ? &billing : nullptr](
                                           const knowledge::IngestReport& r) {
    if (r.document.status != knowledge::DocumentStatus::kReady) return;
    platform::UsageRecord record;
    record.request_id = r.document.id;
    record.kind = std::string(platform::kUsageDocumentIngest);
    record.tenant_id = r.tenant_id;
    record.q.bytes = r.document.size_bytes;
    record.q.pages = r.document.pages;
    record.q.ocr_pages = r.document.ocr_pages;
    // Charged (OCR pages, embedding tokens) and journaled; a failed charge is logged and the
    // record kept: usage is never dropped for a billing error.
    auto submit = [&](const platform::UsageRecord& u) -> Status {
      std::optional<platform::UsageCharge> charge;
      if (b != nullptr) {
        auto c = b->ChargeRecord(u);
        if (c) {
          charge = std::move(*c);
        } else {
          log::Error("billing_charge_failed", {{"request_id", u.request_id}, {"error", c.error().message}});
        }
      }
      return m->Submit(u, std::move(charge));
    };
    if (auto s = submit(record); !s) {
      log::Error("document_metering_failed",
                 {{"document_id", r.document.id}, {"error", s.error().message}});
    }
    // The tokens its chunks cost the space's embedding model: a second record, as idempotent.
    if (r.embedding_tokens <= 0) return;
    platform::UsageRecord embed;
    embed.request_id = r.document.id + ":embed";
    embed.kind = std::string(platform::kUsageEmbeddingTokens);
    embed.tenant_id = r.tenant_id;
    embed.model = r.embedding_model;
    embed.q.prompt_tokens = r.embedding_tokens;
    if (auto s = submit(embed); !s) {
      log::Error("embedding_metering_failed",
                 {{"document_id", r.document.id}, {"error", s.error().message}});
    }
  };
  auto knowledge = OpenKnowledgeStack(*dir, std::move(knowledge_options));
  if (!knowledge) return PrintError(knowledge.error());

  std::atomic<bool> draining{false};
  api::AppContext context;
  context.db = store->db.get();
  context.tenants = &tenants;
  context.keys = &keys;
  context.limiter = &limiter;
  context.metrics = &registry;
  context.registry = models->get();
  context.models = &model_manager;
  context.workers = &request_workers;
  context.knowledge = knowledge->knowledge.get();
  context.studio = knowledge->studio.get();
  context.purge_tenant_data = [stores = knowledge->stores.get()](std::string_view tenant_id) {
    return stores->Purge(tenant_id);
  };
  context.audit = &audit_log;
  context.keyring = keyring->get();
  if (!context.audit_event) {
    context.audit_event = [&audit_log](const platform::Principal& p, std::string_view action,
                                       std::string_view target, const std::string& details) {
      auto s = audit_log.Append({.tenant_id = p.tenant_id,
                                 .actor = p.key_id,
                                 .action = std::string(action),
                                 .target = std::string(target),
                                 .details_json = details});
      if (!s) {
        log::Error("audit_append_failed",
                   {{"action", std::string(action)}, {"error", s.error().message}});
      }
    };
  }
  context.default_requests_per_minute = config.limits.default_requests_per_minute;
  tenant_stores = knowledge->stores.get();
  if (config.billing.enabled != 0) {
    context.meter = meter->get();
    context.billing = &billing;
    context.storage_quota = [&billing](std::string_view tenant_id, int64_t bytes) {
      return billing.CheckStorageQuota(tenant_id, bytes);
    };
  }
  context.draining = &draining;
  api::Router router;
  api::RegisterRoutes(router, context);

  api::ServerOptions options;
  options.host = config.server.host;
  options.port = static_cast<uint16_t>(config.server.port);
  options.threads = config.server.threads;
  options.max_body_bytes = static_cast<uint64_t>(config.server.max_body_bytes);
  options.header_timeout = std::chrono::milliseconds(config.server.header_timeout_ms);
  options.body_timeout = std::chrono::milliseconds(config.server.body_timeout_ms);
  options.idle_timeout = std::chrono::milliseconds(config.server.idle_timeout_ms);
  options.write_timeout = std::chrono::milliseconds(config.server.write_timeout_ms);
  options.shutdown_grace = std::chrono::milliseconds(config.server.shutdown_grace_ms);
  // Generations still streaming when the grace period ends are ended by unloading the models:
  // their clients get a last error event and [DONE] instead of a cut connection.
  options.on_grace_expired = [&model_manager] { model_manager.Shutdown(); };
  api::HttpServer server(options, router, &registry);
  if (auto s = server.Start(); !s) return PrintError(s.error());

  const std::string host = options.host.find(':') != std::string::npos
                               ? "[" + options.host + "]"
                               : options.host;
  const std::string url = fmt::format("http://{}:{}", host, server.port());
  (void)(*lock)->SetUrl(url);
  std::printf("Yunzhi is serving on %s (data dir %s)\n", url.c_str(),
              dir->path().string().c_str());
  std::fflush(stdout);
  log::Info("server_started", {{"url", url}, {"data_dir", dir->path().string()}});

  // Storage metering: one storage_sample per tenant and hour (idempotent per hour).
  std::mutex sampler_mutex;
  std::condition_variable sampler_cv;
  bool sampler_stop = false;  // guarded by sampler_mutex
  std::thread storage_sampler([&] {
    std::unique_lock lock(sampler_mutex);
    while (!sampler_stop && config.billing.enabled != 0) {
      lock.unlock();
      const int64_t hour = clock.NowUnixMs() / 3'600'000;
      if (auto list = tenants.List()) {
        for (const auto& t : *list) {
          auto bytes = billing.options().stored_bytes(t.id);
          if (bytes && *bytes > 0) {
            if (auto s = platform::RecordStorageHour(**meter, t.id, *bytes, hour); !s) {
              log::Error("storage_sample_failed", {{"tenant_id", t.id}, {"error", s.error().message}});
            }
          }
        }
      }
      lock.lock();
      // Next at the start of the next hour.
      const int64_t next_ms = (hour + 1) * 3'600'000 - clock.NowUnixMs();
      sampler_cv.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(next_ms, 1000)),
                          [&] { return sampler_stop; });
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  log::Info("shutdown_requested",
            {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}, {"in_flight", server.in_flight()}});
  draining = true;
  // A second signal during the grace period ends the process at once.
  std::thread second_signal([&signals] {
    int again = 0;
    sigwait(&signals, &again);
    std::fprintf(stderr, "second signal: exiting without waiting for in-flight requests\n");
    std::_Exit(130);
  });
  second_signal.detach();
  server.Shutdown();
  model_manager.Shutdown();
  {
    std::lock_guard lock(sampler_mutex);
    sampler_stop = true;
  }
  sampler_cv.notify_all();
  storage_sampler.join();
  log::Info("server_stopped", {});
  return 0;
}

}  // namespace yunzhi::cli
