// The route groups of the API (private to src/api/); RegisterRoutes (app.h) adds them all.
// One file per group: app.cc (health, metrics, me, tenants, keys), model_routes.cc (the model
// registry: /v1/models and /api/models), openai_routes.cc (inference: /v1/chat/completions,
// /v1/completions, /tokenize, /detokenize, /api/ps).
#pragma once

#include "yunzhi/api/app.h"
#include "yunzhi/api/http.h"

namespace yunzhi::api {

void RegisterModelRoutes(Router& router, const AppContext& context);
void RegisterOpenAiRoutes(Router& router, const AppContext& context);

}  // namespace yunzhi::api
