// The platform's routes: health, metrics, the OpenAI-compatible /v1 API and the /api
// management API, with authentication, scopes and per-key rate limits in front of them.
//
// Route map (scope needed in brackets; every /v1 and /api route needs `Authorization: Bearer`):
//   GET    /healthz                 liveness, no auth
//   GET    /readyz                  readiness (store answers, not draining), no auth
//   GET    /metrics                 Prometheus text format, no auth
//   GET    /v1/models               [read]  OpenAI list shape
//   GET    /v1/models/{id...}       [read]  one model (404 model_not_found)
//   GET    /api/models              [read]  detailed list
//   POST   /api/models              [platform admin]  {"path","name","replace"} → 202 import job
//   GET    /api/models/imports/{id} [platform admin]  an import job's progress
//   GET    /api/models/{name...}    [read]  one model, detailed
//   PATCH  /api/models/{name...}    [platform admin]  {"keep_alive": "5m" | seconds | -1}
//   DELETE /api/models/{name...}    [platform admin]
//   POST   /v1/chat/completions     [inference]  OpenAI chat (stream, tools, response_format)
//   POST   /v1/completions          [inference]  OpenAI legacy completions
//   POST   /tokenize, /detokenize   [inference]  vLLM's tokenizer helpers
//   GET    /api/ps                  [read]  loaded models, memory, active requests
//   DELETE /api/ps/{name...}        [platform admin]  unload an idle model now
//   GET    /api/me                  [read]  the calling key and its tenant
//   GET    /api/tenants             [platform admin]
//   POST   /api/tenants             [platform admin]  {"name": "..."}
//   GET    /api/tenants/{id}        [platform admin, or admin of that tenant]
//   DELETE /api/tenants/{id}        [platform admin]
//   GET    /api/keys                [admin]  own tenant's keys; platform admin: ?tenant=ID|all
//   POST   /api/keys                [admin]  {"name","scopes":[..],"requests_per_minute","tenant"}
//   DELETE /api/keys/{id}           [admin]  revoke (id or prefix)
#pragma once

#include <atomic>
#include <cstdint>

#include "yunzhi/api/http.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/database.h"

namespace yunzhi {
class ThreadPool;
}  // namespace yunzhi
namespace yunzhi::hub {
class Registry;
}  // namespace yunzhi::hub
namespace yunzhi::serving {
class ModelManager;
}  // namespace yunzhi::serving

namespace yunzhi::api {

// What the routes use. Every pointer must outlive the router's use.
struct AppContext {
  store::Database* db = nullptr;
  platform::Tenants* tenants = nullptr;
  platform::ApiKeys* keys = nullptr;
  platform::RateLimiter* limiter = nullptr;
  metrics::Registry* metrics = nullptr;
  // The model registry (/v1/models, /api/models); null: no models are listed.
  hub::Registry* registry = nullptr;
  // Loaded models (the inference routes); null: inference answers 503.
  serving::ModelManager* models = nullptr;
  // Workers that prepare inference requests (model loading may block for seconds).
  ThreadPool* workers = nullptr;
  // Requests per minute for keys without their own limit (0: unlimited).
  int64_t default_requests_per_minute = 0;
  // Set when shutdown begins: /readyz then answers 503 so load balancers stop sending traffic.
  const std::atomic<bool>* draining = nullptr;
};

// Adds every route above to `router`.
void RegisterRoutes(Router& router, const AppContext& context);

}  // namespace yunzhi::api
