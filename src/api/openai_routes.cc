// Inference over HTTP: the OpenAI-compatible generation routes.
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {

void RegisterOpenAiRoutes(Router& r, const AppContext& ctx) {}

}  // namespace yunzhi::api
