// The model registry over HTTP: /v1/models (OpenAI list shape) and /api/models (management).
// Imports never run on the I/O thread: POST /api/models queues a job on the registry's own
// background thread and answers 202 at once.
#include <fmt/format.h>

#include "yunzhi/hub/registry.h"

#include "yunzhi/studio/derived_models.h"

#include "api/knowledge_json.h"
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

// The OpenAI model object, plus a "meta" object that OpenAI clients ignore.
json::object OpenAiModelJson(const hub::ModelInfo& m) {
  const size_t slash = m.name.find('/');
  return {
      {"id", m.name},
      {"object", "model"},
      {"created", m.created_at_ms / 1000},
      {"owned_by", slash == std::string::npos ? std::string("yunzhi") : m.name.substr(0, slash)},
      {"meta",
       {{"kind", m.kind},
        {"architecture", m.architecture},
        {"n_params", m.n_params},
        {"weight_type", m.weight_type},
        {"context_length", m.context_tokens},
        {"format", std::string(hub::FormatName(m.format))},
        {"size_bytes", m.size_bytes}}}};
}

// The registry's record. Server paths only for platform admins: they reveal the server's layout.
json::object DetailedModelJson(const hub::ModelInfo& m, bool show_paths) {
  json::array files;
  for (const auto& f : m.files) {
    files.push_back(
        {{"name", f.name}, {"digest", "sha256:" + f.digest}, {"size_bytes", f.size_bytes}});
  }
  json::object o{{"id", m.id},
                 {"object", "hub.model"},
                 {"name", m.name},
                 {"format", std::string(hub::FormatName(m.format))},
                 {"kind", m.kind},
                 {"architecture", m.architecture},
                 {"n_params", m.n_params},
                 {"weight_type", m.weight_type},
                 {"context_length", m.context_tokens},
                 {"has_chat_template", m.has_chat_template},
                 {"size_bytes", m.size_bytes},
                 {"digest", "sha256:" + m.digest},
                 {"created_at", m.created_at_ms / 1000},
                 {"keep_alive_ms", nullptr},
                 {"files", std::move(files)}};
  if (m.keep_alive_ms) o["keep_alive_ms"] = *m.keep_alive_ms;
  if (show_paths) {
    o["source_path"] = m.source_path;
    o["path"] = m.path;
  }
  return o;
}

json::object JobJson(const hub::ImportJob& j) {
  json::object o{
      {"id", j.id},
      {"object", "hub.import"},
      {"status", std::string(hub::JobStateName(j.state))},
      {"source_path", j.source_path},
      {"name", j.name},
      {"replace", j.replace},
      {"bytes_done", j.bytes_done},
      {"bytes_total", j.bytes_total},
      {"progress", j.bytes_total > 0
                       ? static_cast<double>(j.bytes_done) / static_cast<double>(j.bytes_total)
                       : (j.state == hub::ImportJob::State::kSucceeded ? 1.0 : 0.0)},
      {"created_at", j.created_at_ms / 1000},
      {"finished_at", Seconds(j.finished_at_ms)},
      {"error", nullptr},
      {"model", nullptr}};
  if (j.error) {
    o["error"] = {
        {"message", j.error->message},
        {"type", std::string(OpenAiErrorType(j.error->code))},
        {"code", j.error->detail.empty() ? json::value(nullptr) : json::value(j.error->detail)}};
  }
  if (j.model) o["model"] = DetailedModelJson(*j.model, true);
  return o;
}

Status NeedRegistry(const AppContext& ctx) {
  if (ctx.registry == nullptr) return UnavailableError("this server has no model registry");
  return OkStatus();
}

Status NeedPlatformAdmin(const Principal& p) {
  if (!p.IsPlatformAdmin()) {
    return Error(Code::kPermissionDenied, "managing models needs an admin key of the system tenant",
                 "", "insufficient_scope");
  }
  return OkStatus();
}

// {"keep_alive": "5m" | 300 | -1 | null}: milliseconds, or nullopt to clear.
Result<std::optional<int64_t>> KeepAliveField(const json::object& body) {
  auto it = body.find("keep_alive");
  if (it == body.end()) {
    return InvalidArgumentError("'keep_alive' is required (\"5m\", seconds, -1, or null)",
                                "keep_alive");
  }
  const json::value& v = it->value();
  if (v.is_null()) return std::optional<int64_t>();
  if (v.is_string()) {
    YZ_ASSIGN_OR_RETURN(int64_t ms, hub::ParseKeepAliveMs(std::string(v.as_string())));
    return std::optional<int64_t>(ms);
  }
  if (v.is_number()) {
    boost::system::error_code ec;
    const double seconds = v.to_number<double>(ec);
    if (!ec && seconds < 0) return std::optional<int64_t>(-1);
    if (!ec && seconds < 9.2e15) {
      return std::optional<int64_t>(static_cast<int64_t>(seconds * 1000.0 + 0.5));
    }
  }
  return InvalidArgumentError(
      "'keep_alive' must be a duration string, a number of seconds, "
      "-1 or null",
      "keep_alive");
}

}  // namespace

void RegisterModelRoutes(Router& r, const AppContext& ctx) {
  r.Add("GET", "/v1/models", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal& p) {
          json::array data;
          if (ctx.registry != nullptr) {
            auto models = ctx.registry->List();
            if (!models) return HttpResponse::FromError(models.error());
            for (const auto& m : *models) data.push_back(OpenAiModelJson(m));
          }
          if (ctx.studio != nullptr) {
            auto derived = ctx.studio->List(p.tenant_id);
            if (!derived) return HttpResponse::FromError(derived.error());
            for (const auto& m : *derived) data.push_back(DerivedModelOpenAiJson(m));
          }
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));

  r.Add("GET", "/v1/models/{id...}",
        Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          const std::string& id = req.path_params["id"];
          if (ctx.studio != nullptr) {
            if (auto d = ctx.studio->Get(p.tenant_id, id)) {
              return JsonResponse(200, DerivedModelOpenAiJson(*d));
            }
          }
          if (ctx.registry == nullptr) {
            return HttpResponse::FromError(Error(Code::kNotFound,
                                                 fmt::format("model '{}' does not exist", id),
                                                 "model", "model_not_found"));
          }
          auto m = ctx.registry->Find(id);
          if (!m) {
            Error e = m.error();
            if (e.code == Code::kNotFound) e.param = "model";
            return HttpResponse::FromError(e);
          }
          return JsonResponse(200, OpenAiModelJson(*m));
        }));

  r.Add("GET", "/api/models", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal& p) {
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto models = ctx.registry->List();
          if (!models) return HttpResponse::FromError(models.error());
          json::array data;
          for (const auto& m : *models) data.push_back(DetailedModelJson(m, p.IsPlatformAdmin()));
          if (ctx.studio != nullptr) {
            auto derived = ctx.studio->List(p.tenant_id);
            if (!derived) return HttpResponse::FromError(derived.error());
            for (const auto& m : *derived) data.push_back(DerivedModelJson(m));
          }
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));

  r.Add("POST", "/api/models",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          // With a "parent": a derived model of the caller's tenant (studio), not an import.
          if (auto b = JsonBody(req); b && IsDerivedModelRequest(*b)) {
            return CreateDerivedModel(ctx, *b, p);
          }
          if (auto s = NeedPlatformAdmin(p); !s) return HttpResponse::FromError(s.error());
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto path = OptString(*body, "path");
          if (!path) return HttpResponse::FromError(path.error());
          if (!*path || (*path)->empty()) {
            return HttpResponse::FromError(InvalidArgumentError(
                "'path' is required: a GGUF file or Hugging Face directory on the server", "path"));
          }
          auto name = OptString(*body, "name");
          if (!name) return HttpResponse::FromError(name.error());
          bool replace = false;
          if (auto it = body->find("replace"); it != body->end() && !it->value().is_null()) {
            if (!it->value().is_bool()) {
              return HttpResponse::FromError(
                  InvalidArgumentError("'replace' must be a boolean", "replace"));
            }
            replace = it->value().as_bool();
          }
          auto job = ctx.registry->StartImport(**path, name->value_or(""), replace);
          if (!job) return HttpResponse::FromError(job.error());
          AppendAudit(ctx, p, "", "model.import", job->id,
                      {{"path", **path}, {"name", name->value_or("")}, {"replace", replace}});
          HttpResponse resp = JsonResponse(202, JobJson(*job));
          resp.headers.emplace("Location", "/api/models/imports/" + job->id);
          return resp;
        }));

  r.Add("GET", "/api/models/imports",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest&, const Principal& p) {
          if (auto s = NeedPlatformAdmin(p); !s) return HttpResponse::FromError(s.error());
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          json::array data;
          for (const auto& j : ctx.registry->ListImports()) data.push_back(JobJson(j));
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));

  r.Add("GET", "/api/models/imports/{id}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedPlatformAdmin(p); !s) return HttpResponse::FromError(s.error());
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto job = ctx.registry->GetImport(req.path_params["id"]);
          if (!job) return HttpResponse::FromError(job.error());
          return JsonResponse(200, JobJson(*job));
        }));

  r.Add("GET", "/api/models/{name...}",
        Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.studio != nullptr) {
            if (auto d = ctx.studio->Get(p.tenant_id, req.path_params["name"])) {
              return JsonResponse(200, DerivedModelJson(*d));
            }
          }
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto m = ctx.registry->Find(req.path_params["name"]);
          if (!m) return HttpResponse::FromError(m.error());
          return JsonResponse(200, DetailedModelJson(*m, p.IsPlatformAdmin()));
        }));

  r.Add("PATCH", "/api/models/{name...}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedPlatformAdmin(p); !s) return HttpResponse::FromError(s.error());
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto keep_alive = KeepAliveField(*body);
          if (!keep_alive) return HttpResponse::FromError(keep_alive.error());
          auto m = ctx.registry->SetKeepAlive(req.path_params["name"], *keep_alive);
          if (!m) return HttpResponse::FromError(m.error());
          return JsonResponse(200, DetailedModelJson(*m, true));
        }));

  r.Add("DELETE", "/api/models/{name...}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (ctx.studio != nullptr) {
            // An own derived model: its tenant's admins may delete it.
            auto d = ctx.studio->Get(p.tenant_id, req.path_params["name"]);
            if (d && d->tenant_id == p.tenant_id) {
              if (auto s = ctx.studio->Delete(p.tenant_id, d->id); !s) {
                return HttpResponse::FromError(s.error());
              }
              Audit(ctx, p, "model.delete", d->id, {{"name", d->name}});
              return JsonResponse(
                  200, json::object{{"id", d->name}, {"object", "model"}, {"deleted", true}});
            }
          }
          // A name that is neither an own derived model nor a base model does not exist for
          // this caller (another tenant's models are never revealed, not even by a 403).
          if (ctx.registry != nullptr && !p.IsPlatformAdmin() &&
              !ctx.registry->Find(req.path_params["name"])) {
            return HttpResponse::FromError(Error(
                Code::kNotFound, fmt::format("model '{}' does not exist", req.path_params["name"]),
                "model", "model_not_found"));
          }
          if (auto s = NeedPlatformAdmin(p); !s) return HttpResponse::FromError(s.error());
          if (auto s = NeedRegistry(ctx); !s) return HttpResponse::FromError(s.error());
          auto m = ctx.registry->Remove(req.path_params["name"]);
          if (!m) return HttpResponse::FromError(m.error());
          AppendAudit(ctx, p, "", "model.delete", m->id, {{"name", m->name}});
          return JsonResponse(
              200, json::object{{"id", m->name}, {"object", "model"}, {"deleted", true}});
        }));
}

}  // namespace yunzhi::api
