// Knowledge spaces, documents, ingestion jobs and search (/api/spaces, /api/jobs), and the
// derived-model management the model routes delegate to. Every handler acts on the calling
// key's own tenant: another tenant's ids simply do not exist in the store it is given.
#include <filesystem>

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/studio/derived_models.h"
#include "api/knowledge_json.h"
#include "api/multipart.h"
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

Status NeedKnowledge(const AppContext& ctx) {
  if (ctx.knowledge == nullptr) {
    return UnavailableError("this server has no knowledge spaces configured");
  }
  return OkStatus();
}

// Runs `work` on the worker pool (storage, extraction and embedding may take a while) and
// answers with its response.
HttpResponse OnWorkers(const AppContext& ctx, std::function<HttpResponse()> work) {
  if (ctx.workers == nullptr) return work();
  auto pending = std::make_shared<PendingResponse>();
  try {
    ctx.workers->Post([pending, work = std::move(work)] {
      if (pending->cancelled()) return;
      try {
        pending->Complete(work());
      } catch (const std::exception& e) {
        log::Error("knowledge_worker_threw", {{"error", e.what()}});
        pending->Complete(HttpResponse::FromError(InternalError("internal server error")));
      }
    });
  } catch (const std::exception&) {
    return HttpResponse::FromError(UnavailableError("the server is shutting down"));
  }
  return HttpResponse::Deferred(pending);
}

Result<std::optional<double>> OptNumber(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return std::optional<double>();
  if (it->value().is_double()) return std::optional<double>(it->value().as_double());
  if (it->value().is_int64()) return std::optional<double>(static_cast<double>(it->value().as_int64()));
  if (it->value().is_uint64()) return std::optional<double>(static_cast<double>(it->value().as_uint64()));
  return InvalidArgumentError(fmt::format("'{}' must be a number", field), std::string(field));
}

Result<std::optional<bool>> OptBool(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return std::optional<bool>();
  if (!it->value().is_bool()) {
    return InvalidArgumentError(fmt::format("'{}' must be a boolean", field), std::string(field));
  }
  return std::optional<bool>(it->value().as_bool());
}

std::string BaseName(std::string_view name) {
  // Browsers and some clients send paths ("C:\\dir\\a.pdf"): keep the last component.
  size_t slash = name.find_last_of("/\\");
  return std::string(slash == std::string_view::npos ? name : name.substr(slash + 1));
}

// The files of an upload: multipart parts with a filename (or named "file"/"files"), or the raw
// body named by ?name= or X-File-Name.
Result<std::vector<knowledge::Upload>> UploadsOf(HttpRequest& req) {
  std::vector<knowledge::Upload> uploads;
  const std::string content_type = req.Header("Content-Type").value_or("");
  if (content_type.rfind("multipart/", 0) == 0) {
    YZ_ASSIGN_OR_RETURN(auto boundary, MultipartBoundary(content_type));
    YZ_ASSIGN_OR_RETURN(auto parts, ParseMultipart(req.body, boundary));
    for (FormPart& part : parts) {
      if (part.filename.empty() && part.name != "file" && part.name != "files") continue;
      uploads.push_back({BaseName(part.filename.empty() ? part.name : part.filename),
                         std::move(part.data)});
    }
    if (uploads.empty()) {
      return InvalidArgumentError("the form has no file parts (send files as 'file' parts)",
                                  "file");
    }
    return uploads;
  }
  std::string name = req.QueryParam("name").value_or(req.Header("X-File-Name").value_or(""));
  if (name.empty()) name = "upload";
  uploads.push_back({BaseName(name), std::move(req.body)});
  return uploads;
}

Result<knowledge::RetrievalSettings> RetrievalFrom(const json::object& o,
                                                   knowledge::RetrievalSettings r) {
  YZ_ASSIGN_OR_RETURN(auto top_k, OptInt(o, "top_k"));
  if (top_k) r.top_k = static_cast<int>(*top_k);
  YZ_ASSIGN_OR_RETURN(auto threshold, OptNumber(o, "score_threshold"));
  if (threshold) r.score_threshold = *threshold;
  YZ_ASSIGN_OR_RETURN(auto mode, OptString(o, "mode"));
  if (mode) {
    YZ_ASSIGN_OR_RETURN(r.mode, knowledge::ParseRetrievalMode(*mode));
  }
  YZ_ASSIGN_OR_RETURN(auto lw, OptNumber(o, "lexical_weight"));
  if (lw) r.lexical_weight = *lw;
  YZ_ASSIGN_OR_RETURN(auto vw, OptNumber(o, "vector_weight"));
  if (vw) r.vector_weight = *vw;
  YZ_ASSIGN_OR_RETURN(auto rerank, OptString(o, "rerank_model"));
  if (rerank) r.rerank_model = *rerank;
  YZ_ASSIGN_OR_RETURN(auto candidates, OptInt(o, "candidates"));
  if (candidates) r.candidates = static_cast<int>(*candidates);
  if (r.top_k < 1 || r.top_k > 100) {
    return InvalidArgumentError("'top_k' must be between 1 and 100", "top_k");
  }
  if (r.candidates < 1 || r.candidates > 1000) {
    return InvalidArgumentError("'candidates' must be between 1 and 1000", "candidates");
  }
  return r;
}

void RegisterSpaceRoutes(Router& r, const AppContext& ctx) {
  r.Add("GET", "/api/spaces", Authed(ctx, Scope::kRead, [ctx](HttpRequest&, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto list = ctx.knowledge->ListSpaces(p.tenant_id);
          if (!list) return HttpResponse::FromError(list.error());
          json::array data;
          for (const auto& s : *list) data.push_back(SpaceJson(s));
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));
  r.Add("POST", "/api/spaces",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          knowledge::SpaceSpec spec;
          auto name = OptString(*body, "name");
          if (!name) return HttpResponse::FromError(name.error());
          if (!*name) {
            return HttpResponse::FromError(InvalidArgumentError("'name' is required", "name"));
          }
          spec.name = **name;
          auto description = OptString(*body, "description");
          if (!description) return HttpResponse::FromError(description.error());
          spec.description = description->value_or("");
          auto embedding = OptString(*body, "embedding_model");
          if (!embedding) return HttpResponse::FromError(embedding.error());
          spec.embedding_model = embedding->value_or("");
          auto size = OptInt(*body, "chunk_size");
          if (!size) return HttpResponse::FromError(size.error());
          if (*size) spec.chunking.max_tokens = static_cast<int>(**size);
          auto overlap = OptInt(*body, "chunk_overlap");
          if (!overlap) return HttpResponse::FromError(overlap.error());
          if (*overlap) spec.chunking.overlap_tokens = static_cast<int>(**overlap);
          auto shared = OptBool(*body, "shared");
          if (!shared) return HttpResponse::FromError(shared.error());
          spec.shared = shared->value_or(false);
          if (spec.shared && !p.system_tenant) {
            return HttpResponse::FromError(Error(
                Code::kPermissionDenied, "only the platform operator's spaces can be shared",
                "shared"));
          }
          auto space = ctx.knowledge->CreateSpace(p.tenant_id, spec);
          if (!space) return HttpResponse::FromError(space.error());
          Audit(ctx, p, "space.create", space->id, {{"name", space->name}});
          return JsonResponse(201, SpaceJson(*space));
        }));
  r.Add("GET", "/api/spaces/{id}",
        Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto space = ctx.knowledge->GetSpace(p.tenant_id, req.path_params["id"]);
          if (!space) return HttpResponse::FromError(space.error());
          return JsonResponse(200, SpaceJson(*space));
        }));
  r.Add("DELETE", "/api/spaces/{id}",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto space = ctx.knowledge->GetSpace(p.tenant_id, req.path_params["id"]);
          if (!space) return HttpResponse::FromError(space.error());
          if (ctx.studio != nullptr) {
            auto users = ctx.studio->ModelsUsingSpace(p.tenant_id, space->id);
            if (!users) return HttpResponse::FromError(users.error());
            if (!users->empty()) {
              return HttpResponse::FromError(FailedPreconditionError(fmt::format(
                  "space '{}' is used by model '{}': delete or change that model first",
                  space->name, users->front())));
            }
          }
          return OnWorkers(ctx, [ctx, p, space = *space] {
            if (auto s = ctx.knowledge->DeleteSpace(p.tenant_id, space.id); !s) {
              return HttpResponse::FromError(s.error());
            }
            Audit(ctx, p, "space.delete", space.id, {{"name", space.name}});
            return JsonResponse(200, json::object{{"id", space.id},
                                                  {"object", "knowledge_space"},
                                                  {"deleted", true}});
          });
        }));
}

void RegisterDocumentRoutes(Router& r, const AppContext& ctx) {
  r.Add("POST", "/api/spaces/{id}/documents",
        Authed(ctx, Scope::kAdmin, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto uploads = UploadsOf(req);
          if (!uploads) return HttpResponse::FromError(uploads.error());
          auto shared = std::make_shared<std::vector<knowledge::Upload>>(std::move(*uploads));
          return OnWorkers(ctx, [ctx, p, shared, space = req.path_params["id"]] {
            int64_t bytes = 0;
            for (const auto& u : *shared) bytes += static_cast<int64_t>(u.bytes.size());
            if (ctx.storage_quota) {
              if (auto s = ctx.storage_quota(p.tenant_id, bytes); !s) {
                return HttpResponse::FromError(s.error());
              }
            }
            std::vector<std::string> names;
            for (const auto& u : *shared) names.push_back(u.name);
            auto job = ctx.knowledge->AddDocuments(p.tenant_id, space, std::move(*shared));
            if (!job) return HttpResponse::FromError(job.error());
            json::array docs;
            for (const auto& f : job->files) docs.emplace_back(f.document_id);
            Audit(ctx, p, "document.upload", job->space_id,
                  {{"job_id", job->id}, {"documents", std::move(docs)}, {"bytes", bytes}});
            HttpResponse resp = JsonResponse(202, JobJson(*job));
            resp.headers.emplace("Location", "/api/jobs/" + job->id);
            return resp;
          });
        }));
  r.Add("GET", "/api/spaces/{id}/documents",
        Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto docs = ctx.knowledge->ListDocuments(p.tenant_id, req.path_params["id"]);
          if (!docs) return HttpResponse::FromError(docs.error());
          json::array data;
          for (const auto& d : *docs) data.push_back(DocumentJson(d));
          return JsonResponse(200, json::object{{"object", "list"}, {"data", std::move(data)}});
        }));
  // A document is addressed under its space; one of another space is "not found" there.
  auto document_in_space = [ctx](const Principal& p, HttpRequest& req)
      -> Result<knowledge::Document> {
    YZ_RETURN_IF_ERROR(NeedKnowledge(ctx));
    YZ_ASSIGN_OR_RETURN(auto space, ctx.knowledge->GetSpace(p.tenant_id, req.path_params["id"]));
    auto doc = ctx.knowledge->GetDocument(p.tenant_id, req.path_params["doc"]);
    if (!doc || doc->space_id != space.id) {
      return NotFoundError(fmt::format("document '{}' does not exist in space '{}'",
                                       req.path_params["doc"], space.name));
    }
    return doc;
  };
  r.Add("GET", "/api/spaces/{id}/documents/{doc}",
        Authed(ctx, Scope::kRead, [document_in_space](HttpRequest& req, const Principal& p) {
          auto doc = document_in_space(p, req);
          if (!doc) return HttpResponse::FromError(doc.error());
          return JsonResponse(200, DocumentJson(*doc));
        }));
  r.Add("GET", "/api/spaces/{id}/documents/{doc}/content",
        Authed(ctx, Scope::kRead, [ctx, document_in_space](HttpRequest& req, const Principal& p) {
          auto doc = document_in_space(p, req);
          if (!doc) return HttpResponse::FromError(doc.error());
          auto bytes = ctx.knowledge->DocumentBytes(p.tenant_id, doc->id);
          if (!bytes) return HttpResponse::FromError(bytes.error());
          Audit(ctx, p, "document.read", doc->id, {});
          HttpResponse resp = HttpResponse::Text(
              200, std::move(*bytes), doc->mime_type.empty() ? "application/octet-stream" : doc->mime_type);
          return resp;
        }));
  r.Add("DELETE", "/api/spaces/{id}/documents/{doc}",
        Authed(ctx, Scope::kAdmin, [ctx, document_in_space](HttpRequest& req, const Principal& p) {
          auto doc = document_in_space(p, req);
          if (!doc) return HttpResponse::FromError(doc.error());
          return OnWorkers(ctx, [ctx, p, doc = *doc] {
            if (auto s = ctx.knowledge->DeleteDocument(p.tenant_id, doc.id); !s) {
              return HttpResponse::FromError(s.error());
            }
            Audit(ctx, p, "document.delete", doc.id, {{"space_id", doc.space_id}});
            return JsonResponse(
                200, json::object{{"id", doc.id}, {"object", "document"}, {"deleted", true}});
          });
        }));
  r.Add("GET", "/api/jobs/{id}", Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto job = ctx.knowledge->GetJob(p.tenant_id, req.path_params["id"]);
          if (!job) return HttpResponse::FromError(job.error());
          return JsonResponse(200, JobJson(*job));
        }));
  r.Add("POST", "/api/spaces/{id}/search",
        Authed(ctx, Scope::kRead, [ctx](HttpRequest& req, const Principal& p) {
          if (auto s = NeedKnowledge(ctx); !s) return HttpResponse::FromError(s.error());
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto query = OptString(*body, "query");
          if (!query) return HttpResponse::FromError(query.error());
          if (!*query || (*query)->empty()) {
            return HttpResponse::FromError(InvalidArgumentError("'query' is required", "query"));
          }
          auto settings = RetrievalFrom(*body, {});
          if (!settings) return HttpResponse::FromError(settings.error());
          auto space = ctx.knowledge->GetSpace(p.tenant_id, req.path_params["id"]);
          if (!space) return HttpResponse::FromError(space.error());
          return OnWorkers(ctx, [ctx, p, space = *space, q = **query, settings = *settings] {
            const knowledge::SpaceRef ref{p.tenant_id, space.id};
            auto hits = ctx.knowledge->Search({&ref, 1}, q, settings);
            if (!hits) return HttpResponse::FromError(hits.error());
            json::array data, read;
            for (const auto& h : *hits) {
              data.push_back(HitJson(h));
              read.emplace_back(h.document_id);
            }
            Audit(ctx, p, "search", space.id, {{"documents", std::move(read)}});
            return JsonResponse(200, json::object{{"object", "list"},
                                                  {"query", q},
                                                  {"mode", std::string(knowledge::RetrievalModeName(settings.mode))},
                                                  {"data", std::move(data)}});
          });
        }));
}

}  // namespace

void RegisterKnowledgeRoutes(Router& router, const AppContext& context) {
  RegisterSpaceRoutes(router, context);
  RegisterDocumentRoutes(router, context);
}

// ---- derived models (called from the model routes)

bool IsDerivedModelRequest(const json::object& body) { return body.contains("parent"); }

HttpResponse CreateDerivedModel(const AppContext& ctx, const json::object& body,
                                const Principal& p) {
  if (ctx.studio == nullptr) {
    return HttpResponse::FromError(UnavailableError("derived models are not enabled here"));
  }
  studio::DerivedModelSpec spec;
  auto name = OptString(body, "name");
  if (!name) return HttpResponse::FromError(name.error());
  if (!*name) return HttpResponse::FromError(InvalidArgumentError("'name' is required", "name"));
  spec.name = **name;
  auto parent = OptString(body, "parent");
  if (!parent) return HttpResponse::FromError(parent.error());
  spec.parent = parent->value_or("");
  for (auto [field, out] : {std::pair{"description", &spec.description},
                            std::pair{"instructions", &spec.instructions}}) {
    auto v = OptString(body, field);
    if (!v) return HttpResponse::FromError(v.error());
    *out = v->value_or("");
  }
  if (auto it = body.find("spaces"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_array()) {
      return HttpResponse::FromError(
          InvalidArgumentError("'spaces' must be an array of space names or ids", "spaces"));
    }
    for (const auto& s : it->value().as_array()) {
      if (!s.is_string()) {
        return HttpResponse::FromError(
            InvalidArgumentError("'spaces' must be an array of space names or ids", "spaces"));
      }
      spec.spaces.emplace_back(s.as_string());
    }
  }
  if (auto it = body.find("retrieval"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_object()) {
      return HttpResponse::FromError(
          InvalidArgumentError("'retrieval' must be an object", "retrieval"));
    }
    knowledge::RetrievalSettings defaults;
    defaults.top_k = 4;
    auto r = RetrievalFrom(it->value().as_object(), defaults);
    if (!r) return HttpResponse::FromError(r.error());
    spec.retrieval = *r;
  }
  if (auto it = body.find("defaults"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_object()) {
      return HttpResponse::FromError(InvalidArgumentError("'defaults' must be an object", "defaults"));
    }
    const auto& d = it->value().as_object();
    auto t = OptNumber(d, "temperature");
    if (!t) return HttpResponse::FromError(t.error());
    spec.defaults.temperature = *t;
    auto tp = OptNumber(d, "top_p");
    if (!tp) return HttpResponse::FromError(tp.error());
    spec.defaults.top_p = *tp;
    auto mt = OptInt(d, "max_tokens");
    if (!mt) return HttpResponse::FromError(mt.error());
    spec.defaults.max_tokens = *mt;
  }
  auto shared = OptBool(body, "shared");
  if (!shared) return HttpResponse::FromError(shared.error());
  spec.shared = shared->value_or(false);
  if (spec.shared && !p.system_tenant) {
    return HttpResponse::FromError(Error(
        Code::kPermissionDenied, "only the platform operator's models can be shared", "shared"));
  }
  auto model = ctx.studio->Create(p.tenant_id, spec);
  if (!model) return HttpResponse::FromError(model.error());
  Audit(ctx, p, "model.create", model->id, {{"name", model->name}, {"parent", model->parent}});
  return JsonResponse(201, DerivedModelJson(*model));
}

}  // namespace yunzhi::api
