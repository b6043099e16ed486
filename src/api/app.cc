#include "yunzhi/api/app.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/log.h"

namespace yunzhi::api {
namespace json = boost::json;
namespace {

using platform::Principal;
using platform::Scope;
using AuthedHandler = std::function<HttpResponse(HttpRequest&, const Principal&)>;

// Timestamps go out in seconds, as OpenAI's `created` fields do.
json::value Seconds(std::optional<int64_t> ms) {
  if (!ms) return nullptr;
  return *ms / 1000;
}

std::string Serialize(const json::value& v) { return json::serialize(v); }

HttpResponse JsonResponse(int status, const json::value& v) {
  return HttpResponse::Json(status, Serialize(v));
}

json::object TenantJson(const platform::Tenant& t) {
  return {{"id", t.id},
          {"object", "tenant"},
          {"name", t.name},
          {"system", t.system},
          {"created_at", t.created_at_ms / 1000}};
}

json::object KeyJson(const platform::ApiKey& k) {
  json::array scopes;
  for (Scope s : {Scope::kAdmin, Scope::kInference, Scope::kRead}) {
    // List the scopes as granted, not as implied.
    if (k.scopes.Granted(s)) scopes.emplace_back(platform::ScopeName(s));
  }
  json::object o{{"id", k.id},
                 {"object", "api_key"},
                 {"name", k.name},
                 {"prefix", k.prefix},
                 {"tenant_id", k.tenant_id},
                 {"scopes", std::move(scopes)},
                 {"created_at", k.created_at_ms / 1000},
                 {"last_used_at", Seconds(k.last_used_at_ms)},
                 {"revoked_at", Seconds(k.revoked_at_ms)}};
  if (k.requests_per_minute) {
    o["requests_per_minute"] = *k.requests_per_minute;
  } else {
    o["requests_per_minute"] = nullptr;
  }
  return o;
}

// Parses a JSON object body, insisting on a JSON content type.
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

// Reads an optional string field; a present non-string is an error naming the field.
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

// Handlers capture the context by value (a handful of pointers), so they own what they use.

// Wraps a handler with authentication, the scope check and the key's rate limit.
Handler Authed(const AppContext& ctx, Scope scope, AuthedHandler fn) {
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

// Platform admins may name any tenant; others act on their own.
Result<std::string> TargetTenant(const AppContext& ctx, const Principal& p,
                                 std::optional<std::string> requested) {
  if (!requested || requested->empty()) return p.tenant_id;
  YZ_ASSIGN_OR_RETURN(auto tenant, ctx.tenants->Find(*requested));
  if (!p.CanAdminister(tenant.id)) {
    return PermissionDeniedError(
        fmt::format("this key may not administer tenant '{}'", *requested));
  }
  return tenant.id;
}

void RegisterHealthAndModels(Router& r, const AppContext& ctx) {
  r.Add("GET", "/healthz",
        [](HttpRequest&) { return HttpResponse::Json(200, R"({"status":"ok"})"); });
  r.Add("GET", "/readyz", [ctx](HttpRequest&) {
    if (ctx.draining && ctx.draining->load()) {
      return HttpResponse::FromError(UnavailableError("server is shutting down"));
    }
    auto probe = ctx.db->Query("SELECT 1");
    if (!probe) {
      return HttpResponse::FromError(
          UnavailableError("metadata store unavailable: " + probe.error().message));
    }
    return HttpResponse::Json(200, R"({"status":"ready"})");
  });
  r.Add("GET", "/metrics", [ctx](HttpRequest&) {
    return HttpResponse::Text(200, ctx.metrics ? ctx.metrics->RenderPrometheus() : "",
                              "text/plain; version=0.0.4; charset=utf-8");
  });

  r.Add("GET", "/v1/models", Authed(ctx, Scope::kRead, [](HttpRequest&, const Principal&) {
          return HttpResponse::Json(200, R"({"object":"list","data":[]})");
        }));

  r.Add("GET", "/api/me", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal& p) {
          auto key = ctx.keys->Find(p.key_id);
          if (!key) return HttpResponse::FromError(key.error());
          json::object o{{"object", "principal"},
                         {"tenant", json::object{{"id", p.tenant_id},
                                                 {"name", p.tenant_name},
                                                 {"system", p.system_tenant}}},
                         {"key", KeyJson(*key)},
                         {"platform_admin", p.IsPlatformAdmin()}};
          return JsonResponse(200, o);
        }));
}

void RegisterTenantRoutes(Router& r, const AppContext& ctx) {
  auto platform_admin_only = [](const Principal& p) -> Status {
    if (!p.IsPlatformAdmin()) {
      return Error(Code::kPermissionDenied,
                   "managing tenants needs an admin key of the system tenant", "",
                   "insufficient_scope");
    }
    return OkStatus();
  };
  r.Add("GET", "/api/tenants",
        Authed(ctx, Scope::kAdmin, [ctx, platform_admin_only](HttpRequest&, const Principal& p) {
          if (auto s = platform_admin_only(p); !s) return HttpResponse::FromError(s.error());
          auto list = ctx.tenants->List();
          if (!list) return HttpResponse::FromError(list.error());
          json::array data;
          for (const auto& t : *list) data.push_back(TenantJson(t));
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));
  r.Add(
      "POST", "/api/tenants",
      Authed(ctx, Scope::kAdmin, [ctx, platform_admin_only](HttpRequest& req, const Principal& p) {
        if (auto s = platform_admin_only(p); !s) return HttpResponse::FromError(s.error());
        auto body = JsonBody(req);
        if (!body) return HttpResponse::FromError(body.error());
        auto name = OptString(*body, "name");
        if (!name) return HttpResponse::FromError(name.error());
        if (!*name)
          return HttpResponse::FromError(InvalidArgumentError("'name' is required", "name"));
        auto t = ctx.tenants->Create(**name);
        if (!t) return HttpResponse::FromError(t.error());
        log::Info("tenant_created", {{"tenant_id", t->id}, {"name", t->name}, {"by", p.key_id}});
        return JsonResponse(201, TenantJson(*t));
      }));
  r.Add("GET", "/api/tenants/{id}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          auto t = ctx.tenants->Find(req.path_params["id"]);
          if (!t) return HttpResponse::FromError(t.error());
          if (!p.CanAdminister(t->id)) {
            // Do not reveal other tenants' existence.
            return HttpResponse::FromError(
                NotFoundError(fmt::format("tenant '{}' does not exist", req.path_params["id"])));
          }
          return JsonResponse(200, TenantJson(*t));
        }));
  r.Add(
      "DELETE", "/api/tenants/{id}",
      Authed(ctx, Scope::kAdmin, [ctx, platform_admin_only](HttpRequest& req, const Principal& p) {
        if (auto s = platform_admin_only(p); !s) return HttpResponse::FromError(s.error());
        auto t = ctx.tenants->Find(req.path_params["id"]);
        if (!t) return HttpResponse::FromError(t.error());
        if (auto s = ctx.tenants->Delete(t->id); !s) return HttpResponse::FromError(s.error());
        log::Info("tenant_deleted", {{"tenant_id", t->id}, {"name", t->name}, {"by", p.key_id}});
        return JsonResponse(200,
                            json::object{{"id", t->id}, {"object", "tenant"}, {"deleted", true}});
      }));
}

void RegisterKeyRoutes(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/keys", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          auto requested = req.QueryParam("tenant");
          std::string tenant;
          if (requested && *requested == "all") {
            if (!p.IsPlatformAdmin()) {
              return HttpResponse::FromError(
                  PermissionDeniedError("listing every tenant's keys needs a platform admin key"));
            }
          } else {
            auto t = TargetTenant(ctx, p, requested);
            if (!t) return HttpResponse::FromError(t.error());
            tenant = *t;
          }
          auto list = ctx.keys->List(tenant);
          if (!list) return HttpResponse::FromError(list.error());
          json::array data;
          for (const auto& k : *list) data.push_back(KeyJson(k));
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));
  r.Add("POST", "/api/keys",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto tenant_field = OptString(*body, "tenant");
          if (!tenant_field) return HttpResponse::FromError(tenant_field.error());
          auto tenant = TargetTenant(ctx, p, *tenant_field);
          if (!tenant) return HttpResponse::FromError(tenant.error());
          platform::KeyOptions options;
          auto name = OptString(*body, "name");
          if (!name) return HttpResponse::FromError(name.error());
          options.name = name->value_or("");
          if (auto it = body->find("scopes"); it != body->end() && !it->value().is_null()) {
            std::string joined;
            if (it->value().is_array()) {
              for (const auto& s : it->value().as_array()) {
                if (!s.is_string()) {
                  return HttpResponse::FromError(
                      InvalidArgumentError("'scopes' must be an array of strings", "scopes"));
                }
                joined += std::string(s.as_string()) + ",";
              }
            } else if (it->value().is_string()) {
              joined = std::string(it->value().as_string());
            } else {
              return HttpResponse::FromError(
                  InvalidArgumentError("'scopes' must be an array of strings", "scopes"));
            }
            auto scopes = platform::Scopes::Parse(joined);
            if (!scopes) return HttpResponse::FromError(scopes.error());
            options.scopes = *scopes;
          }
          auto rpm = OptInt(*body, "requests_per_minute");
          if (!rpm) return HttpResponse::FromError(rpm.error());
          options.requests_per_minute = *rpm;
          auto created = ctx.keys->Create(*tenant, options);
          if (!created) return HttpResponse::FromError(created.error());
          log::Info("api_key_created", {{"key_id", created->key.id},
                                        {"tenant_id", created->key.tenant_id},
                                        {"scopes", created->key.scopes.ToString()},
                                        {"by", p.key_id}});
          json::object o = KeyJson(created->key);
          o["key"] = created->secret;  // shown once
          return JsonResponse(201, o);
        }));
  r.Add("DELETE", "/api/keys/{id}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          auto key = ctx.keys->Find(req.path_params["id"]);
          if (!key || !p.CanAdminister(key->tenant_id)) {
            return HttpResponse::FromError(
                NotFoundError(fmt::format("API key '{}' does not exist", req.path_params["id"])));
          }
          auto revoked = ctx.keys->Revoke(key->id);
          if (!revoked) return HttpResponse::FromError(revoked.error());
          log::Info("api_key_revoked", {{"key_id", revoked->id}, {"by", p.key_id}});
          return JsonResponse(200, KeyJson(*revoked));
        }));
}

}  // namespace

void RegisterRoutes(Router& router, const AppContext& context) {
  RegisterHealthAndModels(router, context);
  RegisterTenantRoutes(router, context);
  RegisterKeyRoutes(router, context);
}

}  // namespace yunzhi::api
