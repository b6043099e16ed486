// `yunzhi serve`: the whole platform in one process on the embedded default store.
#include "cli/serve.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
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
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/data_dir.h"

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

  const Clock& clock = *Clock::System();
  platform::Tenants tenants(*store->db, clock);
  platform::ApiKeys keys(*store->db, tenants, clock);
  platform::RateLimiter limiter(clock);
  metrics::Registry registry;
  if (auto s = EnsureAdminKey(keys, tenants); !s) return PrintError(s.error());
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
  context.default_requests_per_minute = config.limits.default_requests_per_minute;
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
  log::Info("server_stopped", {});
  return 0;
}

}  // namespace yunzhi::cli
