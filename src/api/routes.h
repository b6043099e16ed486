// The route groups of the API (private to src/api/); RegisterRoutes (app.h) adds them all.
// One file per group: app.cc (health, metrics, me, tenants, keys), model_routes.cc (the model
// registry: /v1/models and /api/models), openai_routes.cc (inference: /v1/chat/completions,
// /v1/completions, /tokenize, /detokenize, /api/ps).
#pragma once

#include "yunzhi/api/app.h"
#include "yunzhi/api/http.h"

#include <boost/json/object.hpp>

namespace yunzhi::api {

void RegisterModelRoutes(Router& router, const AppContext& context);
void RegisterOpenAiRoutes(Router& router, const AppContext& context);
void RegisterEmbeddingRoutes(Router& router, const AppContext& context);  // embedding_routes.cc
void RegisterKnowledgeRoutes(Router& router, const AppContext& context);
void RegisterBillingRoutes(Router& router, const AppContext& context);
void RegisterAuditRoutes(Router& router, const AppContext& context);  // audit_routes.cc
// Appends an audit entry by `p` (actor: its key id) to ctx.audit when set; a failed append is
// logged, never fails the request (the change has happened already).
void AppendAudit(const AppContext& ctx, const platform::Principal& p, std::string_view tenant_id,
                 std::string_view action, std::string_view target,
                 const boost::json::object& details);

// Derived models, created through POST /api/models (knowledge_routes.cc): a body with "parent".
bool IsDerivedModelRequest(const boost::json::object& body);
HttpResponse CreateDerivedModel(const AppContext& ctx, const boost::json::object& body,
                                const platform::Principal& p);

}  // namespace yunzhi::api
