#include "yunzhi/api/app.h"

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/platform/keyring.h"
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

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

void RegisterHealthAndMe(Router& r, const AppContext& ctx) {
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
        AppendAudit(ctx, p, t->id, "tenant.create", t->id, {{"name", t->name}});
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
        if (t->system) {
          return HttpResponse::FromError(
              FailedPreconditionError("the system tenant cannot be deleted"));
        }
        // Crypto-shredding first: once the key is gone, whatever of the tenant's data survives
        // (a failed purge, a backup) is unreadable.
        if (ctx.keyring != nullptr) {
          if (auto s = ctx.keyring->DestroyTenantKey(t->id); !s) {
            return HttpResponse::FromError(s.error());
          }
        }
        if (auto s = ctx.tenants->Delete(t->id); !s) return HttpResponse::FromError(s.error());
        if (ctx.purge_tenant_data) {
          if (auto s = ctx.purge_tenant_data(t->id); !s) {
            log::Error("tenant_purge_failed", {{"tenant_id", t->id}, {"error", s.error().message}});
          }
        }
        log::Info("tenant_deleted", {{"tenant_id", t->id}, {"name", t->name}, {"by", p.key_id}});
        AppendAudit(ctx, p, t->id, "tenant.delete", t->id,
                    {{"name", t->name}, {"key_destroyed", ctx.keyring != nullptr}});
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
          AppendAudit(ctx, p, created->key.tenant_id, "key.create", created->key.id,
                      {{"prefix", created->key.prefix},
                       {"scopes", created->key.scopes.ToString()}});
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
          AppendAudit(ctx, p, revoked->tenant_id, "key.revoke", revoked->id,
                      {{"prefix", revoked->prefix}});
          return JsonResponse(200, KeyJson(*revoked));
        }));
}

}  // namespace

void RegisterRoutes(Router& router, const AppContext& context) {
  RegisterHealthAndMe(router, context);
  RegisterTenantRoutes(router, context);
  RegisterKeyRoutes(router, context);
  RegisterModelRoutes(router, context);
  RegisterOpenAiRoutes(router, context);
  RegisterEmbeddingRoutes(router, context);
  RegisterKnowledgeRoutes(router, context);
  RegisterBillingRoutes(router, context);
  RegisterAuditRoutes(router, context);
}

}  // namespace yunzhi::api
