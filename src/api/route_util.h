// Helpers shared by the route files of src/api/ (private to the module): JSON bodies and fields,
// and the authentication / scope / rate-limit wrapper every /v1 and /api route goes through.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "yunzhi/api/app.h"
#include "yunzhi/api/http.h"
#include "yunzhi/base/status.h"
#include "yunzhi/platform/api_keys.h"

namespace yunzhi::api {
namespace json = boost::json;

using AuthedHandler = std::function<HttpResponse(HttpRequest&, const platform::Principal&)>;

// Wraps a handler with authentication (Authorization: Bearer), the scope check and the key's
// rate limit (429 + Retry-After and x-ratelimit-* headers).
Handler Authed(const AppContext& ctx, platform::Scope scope, AuthedHandler fn);

// Runs `work` on a request worker (ctx.workers) and answers with the deferred response that
// `work` completes. 503 when this server serves no models or is shutting down; a `work` that
// throws completes the response with a 500 (logged as `<what>_worker_threw`).
HttpResponse DeferToWorker(const AppContext& ctx, std::string_view what,
                           std::function<void(std::shared_ptr<PendingResponse>)> work);

// Timestamps go out in seconds, as OpenAI's `created` fields do; null when absent.
json::value Seconds(std::optional<int64_t> ms);

HttpResponse JsonResponse(int status, const json::value& v);

// Parses a JSON object body, insisting on a JSON content type. Errors: kUnsupportedMediaType,
// kInvalidArgument (unparsable, or not an object).
Result<json::object> JsonBody(const HttpRequest& req);

// An optional field; a present value of another type is an error naming the field (param).
Result<std::optional<std::string>> OptString(const json::object& o, std::string_view field);
Result<std::optional<int64_t>> OptInt(const json::object& o, std::string_view field);

}  // namespace yunzhi::api
