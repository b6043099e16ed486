// The model registry over HTTP: /v1/models (OpenAI list shape) and /api/models (management).
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {

void RegisterModelRoutes(Router& r, const AppContext& ctx) {
  r.Add("GET", "/v1/models",
        Authed(ctx, platform::Scope::kRead, [](HttpRequest&, const platform::Principal&) {
          return HttpResponse::Json(200, R"({"object":"list","data":[]})");
        }));
}

}  // namespace yunzhi::api
