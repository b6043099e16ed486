// GET /api/audit: the audit log over HTTP, scoped to the caller's tenant (platform admins see
// every tenant's entries, or one with ?tenant=). Also the helper the other route files use to
// append entries.
#include <charconv>

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/platform/audit.h"

#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

Result<std::optional<int64_t>> IntParam(const HttpRequest& req, std::string_view name,
                                        int64_t min, int64_t max) {
  auto v = req.QueryParam(name);
  if (!v) return std::optional<int64_t>();
  int64_t out = 0;
  const char* end = v->data() + v->size();
  auto [ptr, ec] = std::from_chars(v->data(), end, out);
  if (ec != std::errc() || ptr != end || v->empty() || out < min || out > max) {
    return InvalidArgumentError(
        fmt::format("'{}' must be an integer between {} and {}", name, min, max),
        std::string(name));
  }
  return std::optional<int64_t>(out);
}

json::object EntryJson(const platform::AuditEntry& e) {
  boost::system::error_code ec;
  json::value details = json::parse(e.details_json, ec);
  if (ec) details = e.details_json;  // stored text that is not JSON is shown as it is
  return {{"object", "audit_entry"},
          {"seq", e.seq},
          {"time", e.time_ms / 1000},
          {"time_ms", e.time_ms},
          {"tenant_id", e.tenant_id},
          {"actor", e.actor},
          {"action", e.action},
          {"target", e.target},
          {"details", std::move(details)},
          {"prev_hash", e.prev_hash},
          {"hash", e.hash}};
}

}  // namespace

void AppendAudit(const AppContext& ctx, const Principal& p, std::string_view tenant_id,
                 std::string_view action, std::string_view target, const json::object& details) {
  if (ctx.audit == nullptr) return;
  platform::AuditEvent e;
  e.tenant_id = std::string(tenant_id);
  e.actor = p.key_id;
  e.action = std::string(action);
  e.target = std::string(target);
  e.details_json = json::serialize(details);
  if (auto s = ctx.audit->Append(e); !s) {
    // The change itself has happened; a lost audit entry is logged loudly, not hidden.
    log::Error("audit_append_failed",
               {{"action", e.action}, {"target", e.target}, {"error", s.error().message}});
  }
}

void RegisterAuditRoutes(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/audit", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.audit == nullptr) {
            return HttpResponse::FromError(UnavailableError("this server keeps no audit log"));
          }
          platform::AuditFilter f;
          auto requested = req.QueryParam("tenant");
          if (!p.IsPlatformAdmin()) {
            if (requested && !requested->empty() && *requested != p.tenant_id &&
                *requested != p.tenant_name) {
              return HttpResponse::FromError(PermissionDeniedError(
                  "a tenant admin key may read only its own tenant's audit entries"));
            }
            f.tenant_id = p.tenant_id;
          } else if (requested && !requested->empty() && *requested != "all") {
            // A deleted tenant's entries stay readable by its id.
            auto t = ctx.tenants->Find(*requested);
            f.tenant_id = t ? t->id : std::string(*requested);
          }
          auto from = IntParam(req, "from", 0, int64_t{1} << 40);
          if (!from) return HttpResponse::FromError(from.error());
          if (*from) f.from_ms = **from * 1000;
          auto to = IntParam(req, "to", 0, int64_t{1} << 40);
          if (!to) return HttpResponse::FromError(to.error());
          if (*to) f.to_ms = **to * 1000 + 999;
          auto limit = IntParam(req, "limit", 1, 1000);
          if (!limit) return HttpResponse::FromError(limit.error());
          auto after = IntParam(req, "after", 0, INT64_MAX);
          if (!after) return HttpResponse::FromError(after.error());
          f.after_seq = after->value_or(0);
          if (auto a = req.QueryParam("actor"); a && !a->empty()) f.actor = std::string(*a);
          if (auto a = req.QueryParam("action"); a && !a->empty()) f.action = std::string(*a);
          const int64_t n = limit->value_or(100);
          f.limit = n + 1;  // one more tells whether another page follows
          auto entries = ctx.audit->Query(f);
          if (!entries) return HttpResponse::FromError(entries.error());
          const bool has_more = static_cast<int64_t>(entries->size()) > n;
          if (has_more) entries->pop_back();
          json::array data;
          for (const auto& e : *entries) data.push_back(EntryJson(e));
          json::object o{{"object", "list"}, {"data", std::move(data)}, {"has_more", has_more}};
          if (!entries->empty()) o["next_after"] = entries->back().seq;
          // Reading other tenants' audit trails is itself an auditable act.
          if (p.IsPlatformAdmin() && f.tenant_id != p.tenant_id) {
            AppendAudit(ctx, p, f.tenant_id.value_or(""), "admin.read", "audit",
                        json::object{{"entries", static_cast<int64_t>(entries->size())}});
          }
          return JsonResponse(200, o);
        }));
}

}  // namespace yunzhi::api
