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
//   POST   /v1/embeddings           [inference]  OpenAI embeddings (float / base64, dimensions)
//   POST   /v1/rerank (/rerank, /v2/rerank) [inference]  Jina/Cohere rerank (cross-encoders)
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
//   GET    /api/audit               [admin]  audit entries (audit_routes.cc): own tenant's;
//                                    platform admin: all or ?tenant=ID; filters from, to (unix
//                                    seconds), actor, action, limit (default 100), after (seq)
//   Knowledge spaces (knowledge_routes.cc; always the caller's own tenant):
//   GET    /api/spaces              [read]   list
//   POST   /api/spaces              [admin]  {"name","description","embedding_model",
//                                             "chunk_size","chunk_overlap","shared"}
//   GET    /api/spaces/{id}         [read]   one space (id or name)
//   DELETE /api/spaces/{id}         [admin]  with its documents, chunks, indexes, blobs
//   POST   /api/spaces/{id}/documents [admin] multipart/form-data (every file part) or a raw
//                                             body (?name= / X-File-Name) → 202 job
//   GET    /api/spaces/{id}/documents [read] documents with status, pages, chunks, errors
//   GET    /api/spaces/{id}/documents/{doc} [read]; DELETE [admin]
//   GET    /api/spaces/{id}/documents/{doc}/content [read]  the original bytes
//   POST   /api/spaces/{id}/search  [read]   {"query","top_k","score_threshold","mode",
//                                             "lexical_weight","vector_weight","rerank_model"}
//   GET    /api/jobs/{id}           [read]   an ingestion job: status, progress, per-file errors
//   Derived models (studio): POST /api/models with "parent" [admin] creates one;
//   GET /api/models and /v1/models list the caller's derived models too; DELETE /api/models/{name}
//   [admin] deletes an own derived model; chat with one answers with "citations".
//   Usage and billing (billing_routes.cc; amounts are decimal strings):
//   GET    /api/usage               [read]   ?from=&to=&group_by=day|model|key&format=csv&tenant=
//   GET    /api/billing/prices      [read];  PUT [platform admin] {"pattern","input_per_1m",..}
//   DELETE /api/billing/prices/{pattern...} [platform admin]
//   GET    /api/billing/plans       [admin];  POST [platform admin] {"tenant","kind","capacity",
//                                             "model","start","term_months"}; DELETE /{id}
//   GET    /api/billing/account     [read]   ?key=  balance, limits, trial credit
//   POST   /api/billing/topup       [platform admin] {"tenant","key","amount"}
//   POST   /api/billing/limits      [admin]  {"tenant","key","mode","limit","tokens_per_minute",
//                                             "storage_quota_bytes"} (tenant admin: own keys)
//   GET    /api/billing/statements/{YYYY-MM} [admin] ?format=csv&tenant=
//   Inference reserves its maximum cost first (429 insufficient_quota when a balance, spend
//   limit or trial credit cannot cover it; 429 rate_limit_exceeded for tokens/minute limits)
//   and records usage when it ends (also when cancelled).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

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
namespace yunzhi::knowledge {
class KnowledgeBase;
}  // namespace yunzhi::knowledge
namespace yunzhi::studio {
class Studio;
}  // namespace yunzhi::studio
namespace yunzhi::platform {
class Meter;
class Billing;
}  // namespace yunzhi::platform
namespace yunzhi::platform {
class AuditLog;
class Keyring;
}  // namespace yunzhi::platform

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
  // Knowledge spaces (/api/spaces, /api/jobs); null: those routes answer 503.
  knowledge::KnowledgeBase* knowledge = nullptr;
  // Derived models (POST /api/models with a parent; chat with a derived model); null: none.
  studio::Studio* studio = nullptr;
  // Records an auditable action of the knowledge and studio routes; `details_json` is a JSON
  // object (ids read or written, never content). Null: not audited.
  std::function<void(const platform::Principal&, std::string_view action, std::string_view target,
                     const std::string& details_json)>
      audit_event;
  // Checks a tenant's storage quota before an upload of `bytes` more (null: unlimited).
  // Errors: kPayloadTooLarge with a message naming the quota.
  std::function<Status(std::string_view tenant_id, int64_t bytes)> storage_quota;
  // Removes everything a tenant stored outside the metadata store (its knowledge spaces,
  // documents and derived models: store/tenant_stores.h), when the tenant is deleted.
  std::function<Status(std::string_view tenant_id)> purge_tenant_data;
  // The audit log (platform/audit.h): tenant, key and model changes are appended to it, and
  // GET /api/audit reads it. Null: nothing is audited and /api/audit answers 503.
  platform::AuditLog* audit = nullptr;
  // Per-tenant encryption keys (platform/keyring.h). DELETE /api/tenants/{id} destroys the
  // tenant's key first (crypto-shredding). Null: no keys are destroyed.
  platform::Keyring* keyring = nullptr;
  // Requests per minute for keys without their own limit (0: unlimited).
  int64_t default_requests_per_minute = 0;
  // Usage records (inference, model loads; /api/usage reads the database). Null: not metered.
  platform::Meter* meter = nullptr;
  // Prices, balances, limits, plans, statements. Null: no reservations; /api/billing answers 503.
  platform::Billing* billing = nullptr;
  // Set when shutdown begins: /readyz then answers 503 so load balancers stop sending traffic.
  const std::atomic<bool>* draining = nullptr;
};

// Adds every route above to `router`.
void RegisterRoutes(Router& router, const AppContext& context);

}  // namespace yunzhi::api
