// Usage and billing over HTTP.
//
//   GET    /api/usage                       [read]  ?from=&to=&group_by=day|model|key&format=csv
//                                                   (own tenant; platform admin: ?tenant=ID|all)
//   GET    /api/billing/prices              [read]  the price book
//   PUT    /api/billing/prices              [platform admin]  {"pattern", "input_per_1m": "0.5",..}
//   DELETE /api/billing/prices/{pattern...} [platform admin]
//   GET    /api/billing/plans               [admin] own tenant's plans (platform admin: ?tenant=)
//   POST   /api/billing/plans               [platform admin] {"tenant","kind","capacity","model",
//                                                   "start" (YYYY-MM-DD),"term_months"}
//   DELETE /api/billing/plans/{id}          [platform admin]
//   GET    /api/billing/account             [read]  balance, limits, trial (?key= for a key's)
//   POST   /api/billing/topup               [platform admin] {"tenant","key","amount": "100.00"}
//   POST   /api/billing/limits              [admin] {"tenant","key","mode","limit",
//                                                   "tokens_per_minute","storage_quota_bytes"}
//                                                   (tenant admins: only their own keys' limits)
//   GET    /api/billing/statements/{month}  [admin] YYYY-MM; ?format=csv; platform admin ?tenant=
//
// Amounts travel as decimal strings ("12.345678"), never as JSON numbers (no binary floating
// point for money); JSON integers are accepted too.
#include <fmt/format.h>

#include "api/route_util.h"
#include "api/routes.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"

namespace yunzhi::api {
namespace {

using platform::Money;
using platform::Principal;
using platform::Scope;

HttpResponse Unavailable() {
  return HttpResponse::FromError(UnavailableError("billing is not enabled on this server"));
}

Error NeedsPlatformAdmin(std::string_view what) {
  return Error(Code::kPermissionDenied, fmt::format("{} needs a platform admin key", what), "",
               "insufficient_scope");
}

// The tenant a request acts on: its own, or (platform admin) the one named by ?tenant= / "tenant".
Result<std::string> ActOn(const AppContext& ctx, const Principal& p, const std::optional<std::string>& named) {
  if (!named || named->empty()) return p.tenant_id;
  YZ_ASSIGN_OR_RETURN(auto t, ctx.tenants->Find(*named));
  if (t.id != p.tenant_id && !p.IsPlatformAdmin()) {
    return PermissionDeniedError(fmt::format("this key may not act on tenant '{}'", *named));
  }
  return t.id;
}

// "YYYY-MM-DD" (UTC midnight) or Unix seconds. `end_of_day`: a date means the end of that day.
Result<int64_t> ParseTime(std::string_view text, std::string_view param, bool end_of_day) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    auto range = platform::Billing::MonthRange(text.substr(0, 7));
    int day = 0;
    bool digits = true;
    for (char c : text.substr(8)) {
      digits = digits && c >= '0' && c <= '9';
      day = day * 10 + (c - '0');
    }
    if (range && digits && day >= 1) {
      const int64_t start = range->first + (day - 1) * int64_t{86'400'000};
      if (start < range->second) return end_of_day ? start + 86'400'000 : start;
    }
  } else if (!text.empty() && text.size() < 12 &&
             text.find_first_not_of("0123456789") == std::string_view::npos) {
    return std::stoll(std::string(text)) * 1000;
  }
  return InvalidArgumentError(
      fmt::format("'{}' is not a date (YYYY-MM-DD) or Unix seconds", text), std::string(param));
}

Result<std::optional<Money>> OptMoney(const json::object& o, std::string_view field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::optional<Money>();
  if (v->is_int64()) return std::optional<Money>(Money::Units(v->as_int64()));
  if (!v->is_string()) {
    return InvalidArgumentError(
        fmt::format("'{}' must be a decimal string such as \"12.50\"", field), std::string(field));
  }
  auto m = Money::Parse(std::string_view(v->as_string()));
  if (!m) return InvalidArgumentError(m.error().message, std::string(field));
  return std::optional<Money>(*m);
}

json::object PricesJson(const platform::Prices& p) {
  return {{"pattern", p.pattern},
          {"input_per_1m", p.input_per_1m.ToString()},
          {"cached_input_per_1m", p.cached_input_per_1m.ToString()},
          {"output_per_1m", p.output_per_1m.ToString()},
          {"embedding_per_1m", p.embedding_per_1m.ToString()},
          {"rerank_per_1m", p.rerank_per_1m.ToString()},
          {"storage_per_gb_month", p.storage_per_gb_month.ToString()},
          {"ocr_per_1k_pages", p.ocr_per_1k_pages.ToString()},
          {"compute_per_hour", p.compute_per_hour.ToString()},
          {"throughput_per_1k_tpm_month", p.throughput_per_1k_tpm_month.ToString()}};
}

json::object PlanJson(const platform::Plan& p) {
  return {{"id", p.id},          {"object", "billing.plan"},  {"tenant", p.tenant_id},
          {"kind", p.kind},      {"model", p.model},          {"capacity", p.capacity},
          {"discount_bp", p.discount_bp}, {"start", p.start_ms / 1000}, {"end", p.end_ms / 1000}};
}

json::value OptJson(const std::optional<int64_t>& v) { return v ? json::value(*v) : json::value(nullptr); }

json::object AccountJson(const platform::Account& a, const platform::Billing& billing) {
  const std::string_view currency = billing.options().currency;
  json::object o{{"id", a.id},
                 {"object", "billing.account"},
                 {"tenant", a.tenant_id},
                 {"scope", a.is_key ? "key" : "tenant"},
                 {"mode", a.mode},
                 {"currency", currency},
                 {"limit", a.limit ? json::value(a.limit->ToString()) : json::value(nullptr)},
                 {"used", a.used.ToString()},
                 {"reserved", a.reserved.ToString()},
                 {"tokens_per_minute", OptJson(a.tokens_per_minute)}};
  // Post-paid limits are monthly: what this month has spent (trial credit excluded).
  const int64_t now = billing.clock().NowUnixMs();
  const std::string month = platform::Billing::MonthOf(now);
  o["month"] = month;
  o["month_used"] = (a.period == month ? a.period_used : platform::Money()).ToString();
  if (auto available = platform::Billing::Available(a, now)) o["available"] = available->ToString();
  if (!a.is_key) {
    o["trial_credit"] = a.trial.ToString();
    o["trial_used"] = a.trial_used.ToString();
    o["trial_expires"] = a.trial_expires_ms ? json::value(*a.trial_expires_ms / 1000) : json::value(nullptr);
    o["storage_quota_bytes"] = OptJson(a.storage_quota_bytes);
  }
  return o;
}

json::object QuantitiesJson(const platform::UsageQuantities& q) {
  return {{"prompt_tokens", q.prompt_tokens},   {"cached_prompt_tokens", q.cached_prompt_tokens},
          {"completion_tokens", q.completion_tokens}, {"bytes", q.bytes},
          {"pages", q.pages},                   {"ocr_pages", q.ocr_pages},
          {"byte_hours", q.byte_hours},         {"compute_ms", q.compute_ms}};
}

HttpResponse Csv(std::string body) {
  return HttpResponse::Text(200, std::move(body), "text/csv; charset=utf-8");
}

void RegisterUsage(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/usage", Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.db == nullptr) return Unavailable();
          platform::UsageQuery q;
          auto named = req.QueryParam("tenant");
          if (named && *named == "all") {
            if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("usage of every tenant"));
            q.tenant_id.clear();
          } else {
            auto t = ActOn(ctx, p, named);
            if (!t) return HttpResponse::FromError(t.error());
            q.tenant_id = *t;
          }
          if (auto from = req.QueryParam("from")) {
            auto t = ParseTime(*from, "from", false);
            if (!t) return HttpResponse::FromError(t.error());
            q.from_ms = *t;
          }
          if (auto to = req.QueryParam("to")) {
            auto t = ParseTime(*to, "to", true);
            if (!t) return HttpResponse::FromError(t.error());
            q.to_ms = *t;
          }
          q.group_by = req.QueryParam("group_by").value_or("day");
          // Read your own usage: what was submitted before this request is committed first.
          if (ctx.meter != nullptr) (void)ctx.meter->Flush();
          auto groups = platform::Meter::Aggregate(*ctx.db, q);
          if (!groups) return HttpResponse::FromError(groups.error());
          if (req.QueryParam("format").value_or("json") == "csv") {
            return Csv(platform::Meter::GroupsCsv(*groups, q.group_by));
          }
          json::array data;
          for (const auto& g : *groups) {
            json::object o = QuantitiesJson(g.q);
            o[q.group_by] = g.group;
            o["kind"] = g.kind;
            o["records"] = g.n_records;
            data.push_back(std::move(o));
          }
          return JsonResponse(200, json::object{{"object", "list"},
                                                {"group_by", q.group_by},
                                                {"tenant", q.tenant_id.empty() ? json::value(nullptr)
                                                                               : json::value(q.tenant_id)},
                                                {"data", std::move(data)}});
        }));
}

void RegisterPrices(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/billing/prices", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal&) {
          if (ctx.billing == nullptr) return Unavailable();
          auto list = ctx.billing->ListPrices();
          if (!list) return HttpResponse::FromError(list.error());
          json::array data;
          for (const auto& p : *list) data.push_back(PricesJson(p));
          return JsonResponse(200, json::object{{"object", "list"},
                                                {"currency", ctx.billing->options().currency},
                                                {"data", std::move(data)}});
        }));
  r.Add("PUT", "/api/billing/prices", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("changing prices"));
          if (ctx.billing == nullptr) return Unavailable();
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto pattern = OptString(*body, "pattern");
          if (!pattern) return HttpResponse::FromError(pattern.error());
          if (!*pattern) return HttpResponse::FromError(InvalidArgumentError("'pattern' is required", "pattern"));
          // Unset fields keep their current value (all zero for a new pattern).
          platform::Prices prices;
          auto existing = ctx.billing->ListPrices();
          if (!existing) return HttpResponse::FromError(existing.error());
          for (const auto& e : *existing) {
            if (e.pattern == **pattern) prices = e;
          }
          prices.pattern = **pattern;
          const std::pair<std::string_view, Money*> fields[] = {
              {"input_per_1m", &prices.input_per_1m},
              {"cached_input_per_1m", &prices.cached_input_per_1m},
              {"output_per_1m", &prices.output_per_1m},
              {"embedding_per_1m", &prices.embedding_per_1m},
              {"rerank_per_1m", &prices.rerank_per_1m},
              {"storage_per_gb_month", &prices.storage_per_gb_month},
              {"ocr_per_1k_pages", &prices.ocr_per_1k_pages},
              {"compute_per_hour", &prices.compute_per_hour},
              {"throughput_per_1k_tpm_month", &prices.throughput_per_1k_tpm_month}};
          for (const auto& [name, target] : fields) {
            auto m = OptMoney(*body, name);
            if (!m) return HttpResponse::FromError(m.error());
            if (*m) *target = **m;
          }
          if (auto s = ctx.billing->SetPrices(prices); !s) return HttpResponse::FromError(s.error());
          return JsonResponse(200, PricesJson(prices));
        }));
  r.Add("DELETE", "/api/billing/prices/{pattern...}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("changing prices"));
          if (ctx.billing == nullptr) return Unavailable();
          const std::string& pattern = req.path_params["pattern"];
          if (auto s = ctx.billing->DeletePrices(pattern); !s) return HttpResponse::FromError(s.error());
          return JsonResponse(200, json::object{{"pattern", pattern}, {"deleted", true}});
        }));
}

void RegisterPlans(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/billing/plans", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.billing == nullptr) return Unavailable();
          auto tenant = ActOn(ctx, p, req.QueryParam("tenant"));
          if (!tenant) return HttpResponse::FromError(tenant.error());
          auto plans = ctx.billing->ListPlans(*tenant);
          if (!plans) return HttpResponse::FromError(plans.error());
          json::array data, tiers;
          for (const auto& plan : *plans) data.push_back(PlanJson(plan));
          for (const auto& t : ctx.billing->options().storage_tiers) {
            tiers.push_back(json::object{{"capacity_gb", t.capacity_gb}, {"discount_bp", t.discount_bp}});
          }
          return JsonResponse(200, json::object{{"object", "list"},
                                                {"data", std::move(data)},
                                                {"pay_as_you_go", true},
                                                {"storage_tiers", std::move(tiers)}});
        }));
  r.Add("POST", "/api/billing/plans", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("managing plans"));
          if (ctx.billing == nullptr) return Unavailable();
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto tenant_name = OptString(*body, "tenant");
          auto kind = OptString(*body, "kind");
          auto model = OptString(*body, "model");
          auto start = OptString(*body, "start");
          auto capacity = OptInt(*body, "capacity");
          auto term = OptInt(*body, "term_months");
          for (const Error* e : {tenant_name ? nullptr : &tenant_name.error(), kind ? nullptr : &kind.error(),
                                 model ? nullptr : &model.error(), start ? nullptr : &start.error(),
                                 capacity ? nullptr : &capacity.error(), term ? nullptr : &term.error()}) {
            if (e != nullptr) return HttpResponse::FromError(*e);
          }
          if (!*tenant_name || !*kind || !*capacity) {
            return HttpResponse::FromError(
                InvalidArgumentError("'tenant', 'kind' and 'capacity' are required"));
          }
          auto tenant = ctx.tenants->Find(**tenant_name);
          if (!tenant) return HttpResponse::FromError(tenant.error());
          int64_t start_ms = 0;
          if (*start) {
            auto t = ParseTime(**start, "start", false);
            if (!t) return HttpResponse::FromError(t.error());
            start_ms = *t;
          } else {
            start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
          }
          auto plan = ctx.billing->AddPlan(tenant->id, **kind, model->value_or(""), **capacity, start_ms,
                                           term->value_or(1));
          if (!plan) return HttpResponse::FromError(plan.error());
          return JsonResponse(201, PlanJson(*plan));
        }));
  r.Add("DELETE", "/api/billing/plans/{id}", Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("managing plans"));
          if (ctx.billing == nullptr) return Unavailable();
          if (auto s = ctx.billing->DeletePlan(req.path_params["id"]); !s) return HttpResponse::FromError(s.error());
          return JsonResponse(200, json::object{{"id", req.path_params["id"]}, {"deleted", true}});
        }));
}

void RegisterAccounts(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/billing/account", Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.billing == nullptr) return Unavailable();
          auto tenant = ActOn(ctx, p, req.QueryParam("tenant"));
          if (!tenant) return HttpResponse::FromError(tenant.error());
          if (auto key = req.QueryParam("key")) {
            auto k = ctx.keys->Find(*key);
            if (!k || k->tenant_id != *tenant) {
              return HttpResponse::FromError(NotFoundError(fmt::format("key '{}' does not exist", *key)));
            }
            auto a = ctx.billing->KeyAccount(k->id);
            if (!a) return HttpResponse::FromError(a.error());
            platform::Account none;
            none.id = k->id;
            none.tenant_id = *tenant;
            none.is_key = true;
            return JsonResponse(200, AccountJson(a->value_or(none), *ctx.billing));
          }
          auto a = ctx.billing->TenantAccount(*tenant);
          if (!a) return HttpResponse::FromError(a.error());
          return JsonResponse(200, AccountJson(*a, *ctx.billing));
        }));
  // Resolves "tenant" and "key" of a body: the key must belong to the tenant.
  auto target = [ctx](const json::object& body, const Principal& p)
      -> Result<std::pair<std::string, std::string>> {
    YZ_ASSIGN_OR_RETURN(auto tenant_name, OptString(body, "tenant"));
    YZ_ASSIGN_OR_RETURN(auto key_name, OptString(body, "key"));
    YZ_ASSIGN_OR_RETURN(std::string tenant, ActOn(ctx, p, tenant_name));
    std::string key;
    if (key_name && !key_name->empty()) {
      auto k = ctx.keys->Find(*key_name);
      if (!k || k->tenant_id != tenant) {
        return NotFoundError(fmt::format("key '{}' does not exist in tenant '{}'", *key_name, tenant));
      }
      key = k->id;
    }
    return std::make_pair(tenant, key);
  };
  r.Add("POST", "/api/billing/topup", Authed(ctx, Scope::kAdmin, [ctx, target](HttpRequest& req, const Principal& p) {
          if (!p.IsPlatformAdmin()) return HttpResponse::FromError(NeedsPlatformAdmin("topping up a balance"));
          if (ctx.billing == nullptr) return Unavailable();
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto t = target(*body, p);
          if (!t) return HttpResponse::FromError(t.error());
          auto amount = OptMoney(*body, "amount");
          if (!amount) return HttpResponse::FromError(amount.error());
          if (!*amount) return HttpResponse::FromError(InvalidArgumentError("'amount' is required", "amount"));
          auto a = ctx.billing->TopUp(t->first, t->second, **amount);
          if (!a) return HttpResponse::FromError(a.error());
          return JsonResponse(200, AccountJson(*a, *ctx.billing));
        }));
  r.Add("POST", "/api/billing/limits", Authed(ctx, Scope::kAdmin, [ctx, target](HttpRequest& req, const Principal& p) {
          if (ctx.billing == nullptr) return Unavailable();
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto t = target(*body, p);
          if (!t) return HttpResponse::FromError(t.error());
          // Tenant admins manage their keys' limits; the tenant's own limits are the platform's.
          if (t->second.empty() && !p.IsPlatformAdmin()) {
            return HttpResponse::FromError(NeedsPlatformAdmin("changing a tenant's limits"));
          }
          platform::AccountUpdate u;
          auto mode = OptString(*body, "mode");
          if (!mode) return HttpResponse::FromError(mode.error());
          u.mode = *mode;
          if (body->contains("limit")) {
            auto m = OptMoney(*body, "limit");
            if (!m) return HttpResponse::FromError(m.error());
            u.limit = *m;
          }
          for (auto [name, field] : {std::pair{"tokens_per_minute", &u.tokens_per_minute},
                                     std::pair{"storage_quota_bytes", &u.storage_quota_bytes}}) {
            if (!body->contains(name)) continue;
            auto v = OptInt(*body, name);
            if (!v) return HttpResponse::FromError(v.error());
            *field = *v;
          }
          auto a = ctx.billing->UpdateAccount(t->first, t->second, u);
          if (!a) return HttpResponse::FromError(a.error());
          return JsonResponse(200, AccountJson(*a, *ctx.billing));
        }));
}

json::object StatementJson(const platform::Statement& s) {
  json::array lines;
  for (const auto& l : s.lines) {
    lines.push_back(json::object{{"kind", l.kind},
                                 {"model", l.model},
                                 {"quantity", l.quantity},
                                 {"unit_price", l.unit_price.ToString()},
                                 {"per", l.per},
                                 {"amount", l.amount.ToCentsString()}});
  }
  json::object usage = QuantitiesJson(s.usage_totals);
  usage["records"] = s.n_records;
  return {{"object", "billing.statement"},
          {"tenant", s.tenant_id},
          {"month", s.month},
          {"currency", s.currency},
          {"lines", std::move(lines)},
          {"subtotal", s.subtotal.ToCentsString()},
          {"trial_credit_applied", s.trial_credit_applied.ToCentsString()},
          {"total_due", s.total_due.ToCentsString()},
          {"usage", std::move(usage)}};
}

void RegisterStatements(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/billing/statements/{month}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.billing == nullptr) return Unavailable();
          auto tenant = ActOn(ctx, p, req.QueryParam("tenant"));
          if (!tenant) return HttpResponse::FromError(tenant.error());
          if (ctx.meter != nullptr) (void)ctx.meter->Flush();
          auto s = ctx.billing->MonthlyStatement(*tenant, req.path_params["month"]);
          if (!s) return HttpResponse::FromError(s.error());
          if (req.QueryParam("format").value_or("json") == "csv") {
            return Csv(platform::Billing::StatementCsv(*s));
          }
          return JsonResponse(200, StatementJson(*s));
        }));
}

}  // namespace

void RegisterBillingRoutes(Router& router, const AppContext& context) {
  RegisterUsage(router, context);
  RegisterPrices(router, context);
  RegisterPlans(router, context);
  RegisterAccounts(router, context);
  RegisterStatements(router, context);
}

}  // namespace yunzhi::api
