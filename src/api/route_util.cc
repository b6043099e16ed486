#include "api/route_util.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/base/thread_pool.h"

namespace yunzhi::api {

HttpResponse DeferToWorker(const AppContext& ctx, std::string_view what,
                           std::function<void(std::shared_ptr<PendingResponse>)> work) {
  if (ctx.models == nullptr || ctx.workers == nullptr) {
    return HttpResponse::FromError(UnavailableError("this server does not serve models"));
  }
  auto pending = std::make_shared<PendingResponse>();
  try {
    ctx.workers->Post([pending, what = std::string(what), work = std::move(work)] {
      try {
        work(pending);
      } catch (const std::exception& e) {
        log::Error(what + "_worker_threw", {{"error", e.what()}});
        pending->Complete(HttpResponse::FromError(InternalError("internal server error")));
      }
    });
  } catch (const std::exception&) {
    return HttpResponse::FromError(UnavailableError("the server is shutting down"));
  }
  return HttpResponse::Deferred(pending);
}

json::value Seconds(std::optional<int64_t> ms) {
  if (!ms) return nullptr;
  return *ms / 1000;
}

HttpResponse JsonResponse(int status, const json::value& v) {
  return HttpResponse::Json(status, json::serialize(v));
}

Result<json::object> JsonBody(const HttpRequest& req) {
  auto type = req.Header("Content-Type").value_or("");
  std::string lower(type);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("application/json") == std::string::npos) {
    return Error(Code::kUnsupportedMediaType,
                 fmt::format("expected Content-Type: application/json, got '{}'",
                             type.empty() ? "(none)" : type));
  }
  boost::system::error_code ec;
  json::value v = json::parse(req.body, ec);
  if (ec) {
    return InvalidArgumentError(
        fmt::format("We could not parse the JSON body of your request: {}", ec.message()));
  }
  if (!v.is_object()) return InvalidArgumentError("the request body must be a JSON object");
  return std::move(v.as_object());
}

Result<std::optional<std::string>> OptString(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return std::optional<std::string>();
  if (!it->value().is_string()) {
    return InvalidArgumentError(fmt::format("'{}' must be a string", field), std::string(field));
  }
  return std::optional<std::string>(std::string(it->value().as_string()));
}

Result<std::optional<int64_t>> OptInt(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return std::optional<int64_t>();
  if (it->value().is_int64()) return std::optional<int64_t>(it->value().as_int64());
  if (it->value().is_uint64() && it->value().as_uint64() <= INT64_MAX) {
    return std::optional<int64_t>(static_cast<int64_t>(it->value().as_uint64()));
  }
  return InvalidArgumentError(fmt::format("'{}' must be an integer", field), std::string(field));
}

Handler Authed(const AppContext& ctx, platform::Scope scope, AuthedHandler fn) {
  return [ctx, scope, fn = std::move(fn)](HttpRequest& req) -> HttpResponse {
    auto header = req.Header("Authorization");
    if (!header) {
      return HttpResponse::FromError(
          Error(Code::kUnauthenticated,
                "You didn't provide an API key. Pass it in the Authorization header as "
                "'Authorization: Bearer YOUR_KEY'.",
                "", "missing_api_key"));
    }
    std::string_view h = *header;
    constexpr std::string_view kBearer = "bearer ";
    if (h.size() < kBearer.size() ||
        !std::equal(kBearer.begin(), kBearer.end(), h.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      return HttpResponse::FromError(Error(Code::kUnauthenticated,
                                           "The Authorization header must be 'Bearer YOUR_KEY'.",
                                           "", "invalid_authorization_header"));
    }
    std::string_view token = h.substr(kBearer.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    auto principal = ctx.keys->Authenticate(token);
    if (!principal) return HttpResponse::FromError(principal.error());
    if (!principal->Allows(scope)) {
      return HttpResponse::FromError(Error(
          Code::kPermissionDenied,
          fmt::format("This API key (prefix {}) lacks the '{}' scope needed for {} {}.",
                      principal->key_prefix, platform::ScopeName(scope), req.method, req.path),
          "", "insufficient_scope"));
    }
    const int64_t rpm = principal->requests_per_minute.value_or(ctx.default_requests_per_minute);
    auto decision = ctx.limiter->Acquire(principal->key_id, rpm);
    if (!decision.allowed) {
      auto resp = HttpResponse::FromError(Error(
          Code::kResourceExhausted,
          fmt::format("Rate limit reached for key {}: {} requests per minute. Retry after {} s.",
                      principal->key_prefix, rpm, decision.retry_after_s),
          "", "rate_limit_exceeded"));
      resp.headers.emplace("Retry-After", std::to_string(decision.retry_after_s));
      resp.headers.emplace("x-ratelimit-limit-requests", std::to_string(decision.limit));
      resp.headers.emplace("x-ratelimit-remaining-requests", "0");
      return resp;
    }
    HttpResponse resp = fn(req, *principal);
    if (decision.limit > 0) {
      resp.headers.emplace("x-ratelimit-limit-requests", std::to_string(decision.limit));
      resp.headers.emplace("x-ratelimit-remaining-requests", std::to_string(decision.remaining));
    }
    return resp;
  };
}

}  // namespace yunzhi::api
