#include "yunzhi/studio/derived_models.h"

#include <algorithm>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/ids.h"

namespace yunzhi::studio {

namespace json = boost::json;

std::vector<store::Migration> Studio::Migrations() {
  return {{1, "derived models",
           R"sql(
CREATE TABLE studio_models (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  parent TEXT NOT NULL,
  base_model TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  instructions TEXT NOT NULL DEFAULT '',
  spaces TEXT NOT NULL DEFAULT '[]',
  retrieval TEXT,
  defaults TEXT NOT NULL DEFAULT '{}',
  shared INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX studio_models_by_parent ON studio_models(parent);
)sql",
           ""}};
}

namespace {

constexpr std::string_view kColumns =
    "id, name, parent, base_model, description, instructions, spaces, retrieval, defaults, "
    "shared, created_at_ms";

json::object RetrievalJson(const knowledge::RetrievalSettings& r) {
  return {{"top_k", r.top_k},
          {"score_threshold", r.score_threshold},
          {"mode", std::string(knowledge::RetrievalModeName(r.mode))},
          {"lexical_weight", r.lexical_weight},
          {"vector_weight", r.vector_weight},
          {"rerank_model", r.rerank_model},
          {"candidates", r.candidates}};
}

double Number(const json::object& o, std::string_view key, double fallback) {
  auto it = o.find(key);
  if (it == o.end()) return fallback;
  if (it->value().is_double()) return it->value().as_double();
  if (it->value().is_int64()) return static_cast<double>(it->value().as_int64());
  return fallback;
}

knowledge::RetrievalSettings RetrievalFromJson(const json::object& o) {
  knowledge::RetrievalSettings r;
  r.top_k = static_cast<int>(Number(o, "top_k", r.top_k));
  r.score_threshold = Number(o, "score_threshold", r.score_threshold);
  if (auto it = o.find("mode"); it != o.end() && it->value().is_string()) {
    if (auto m = knowledge::ParseRetrievalMode(std::string(it->value().as_string()))) r.mode = *m;
  }
  r.lexical_weight = Number(o, "lexical_weight", r.lexical_weight);
  r.vector_weight = Number(o, "vector_weight", r.vector_weight);
  if (auto it = o.find("rerank_model"); it != o.end() && it->value().is_string()) {
    r.rerank_model = std::string(it->value().as_string());
  }
  r.candidates = static_cast<int>(Number(o, "candidates", r.candidates));
  return r;
}

std::string DefaultsJson(const GenerationDefaults& d) {
  json::object o;
  if (d.temperature) o["temperature"] = *d.temperature;
  if (d.top_p) o["top_p"] = *d.top_p;
  if (d.max_tokens) o["max_tokens"] = *d.max_tokens;
  return json::serialize(o);
}

GenerationDefaults DefaultsFromJson(std::string_view text) {
  GenerationDefaults d;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return d;
  const auto& o = v.as_object();
  if (o.contains("temperature")) d.temperature = Number(o, "temperature", 0);
  if (o.contains("top_p")) d.top_p = Number(o, "top_p", 1);
  if (o.contains("max_tokens")) d.max_tokens = static_cast<int64_t>(Number(o, "max_tokens", 0));
  return d;
}

DerivedModel FromRow(const store::Row& r, std::string_view tenant) {
  DerivedModel m;
  m.id = r.Text(0);
  m.tenant_id = std::string(tenant);
  m.name = r.Text(1);
  m.parent = r.Text(2);
  m.base_model = r.Text(3);
  m.description = r.Text(4);
  m.instructions = r.Text(5);
  boost::system::error_code ec;
  json::value spaces = json::parse(r.Text(6), ec);
  if (!ec && spaces.is_array()) {
    for (const auto& s : spaces.as_array()) {
      if (s.is_string()) m.space_ids.emplace_back(s.as_string());
    }
  }
  if (auto text = r.OptText(7)) {
    json::value v = json::parse(*text, ec);
    if (!ec && v.is_object()) m.retrieval = RetrievalFromJson(v.as_object());
  }
  m.defaults = DefaultsFromJson(r.Text(8));
  m.shared = r.Int(9) != 0;
  m.created_at_ms = r.Int(10);
  return m;
}

Status ValidateName(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgumentError("a model name must be 1 to 128 characters long", "name");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool punct = c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
    if (!alnum && (i == 0 || !punct)) {
      return InvalidArgumentError(
          fmt::format("invalid model name '{}': use letters, digits and _ . : / -, starting with a "
                      "letter or digit",
                      name),
          "name");
    }
  }
  return OkStatus();
}

Status ValidateRetrieval(const knowledge::RetrievalSettings& r) {
  if (r.top_k < 1 || r.top_k > 20) {
    return InvalidArgumentError("retrieval.top_k must be between 1 and 20", "retrieval.top_k");
  }
  if (r.lexical_weight < 0 || r.vector_weight < 0) {
    return InvalidArgumentError("retrieval weights must not be negative", "retrieval");
  }
  if (r.candidates < r.top_k || r.candidates > 500) {
    return InvalidArgumentError("retrieval.candidates must be between top_k and 500",
                                "retrieval.candidates");
  }
  return OkStatus();
}

}  // namespace

Studio::Studio(store::TenantStores& stores, knowledge::KnowledgeBase& knowledge,
               BaseModelExists base_exists, std::string system_tenant_id, const Clock& clock)
    : stores_(stores),
      knowledge_(knowledge),
      base_exists_(std::move(base_exists)),
      system_tenant_id_(std::move(system_tenant_id)),
      clock_(clock) {}

Result<std::optional<DerivedModel>> Studio::FindVisible(std::string_view tenant_id,
                                                         std::string_view name) {
  YZ_ASSIGN_OR_RETURN(auto db, stores_.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto row, db->QueryOne(fmt::format("SELECT {} FROM studio_models WHERE "
                                                         "name = ? OR id = ?",
                                                         kColumns),
                                             {std::string(name), std::string(name)}));
  if (row) return std::optional<DerivedModel>(FromRow(*row, tenant_id));
  if (tenant_id != system_tenant_id_ && !system_tenant_id_.empty()) {
    YZ_ASSIGN_OR_RETURN(auto sys, stores_.DatabaseOf(system_tenant_id_));
    YZ_ASSIGN_OR_RETURN(auto shared, sys->QueryOne(fmt::format("SELECT {} FROM studio_models "
                                                               "WHERE (name = ? OR id = ?) AND "
                                                               "shared = 1",
                                                               kColumns),
                                                   {std::string(name), std::string(name)}));
    if (shared) return std::optional<DerivedModel>(FromRow(*shared, system_tenant_id_));
  }
  return std::optional<DerivedModel>();
}

Result<DerivedModel> Studio::Create(std::string_view tenant_id, const DerivedModelSpec& spec) {
  YZ_RETURN_IF_ERROR(ValidateName(spec.name));
  if (spec.parent.empty()) return InvalidArgumentError("'parent' is required", "parent");
  if (spec.retrieval) YZ_RETURN_IF_ERROR(ValidateRetrieval(*spec.retrieval));
  if (spec.instructions.size() > 32 * 1024) {
    return InvalidArgumentError("instructions are longer than 32 KiB", "instructions");
  }
  if (spec.defaults.temperature && (*spec.defaults.temperature < 0 || *spec.defaults.temperature > 2)) {
    return InvalidArgumentError("defaults.temperature must be between 0 and 2",
                                "defaults.temperature");
  }
  if (spec.defaults.top_p && (*spec.defaults.top_p <= 0 || *spec.defaults.top_p > 1)) {
    return InvalidArgumentError("defaults.top_p must be in (0, 1]", "defaults.top_p");
  }
  if (spec.defaults.max_tokens && *spec.defaults.max_tokens < 1) {
    return InvalidArgumentError("defaults.max_tokens must be at least 1", "defaults.max_tokens");
  }
  if (base_exists_ && base_exists_(spec.name)) {
    return Error(Code::kAlreadyExists, fmt::format("a base model is called '{}'", spec.name), "name");
  }
  // The parent: a derived model the tenant may call, or a base model.
  std::string base;
  YZ_ASSIGN_OR_RETURN(auto parent_chain, Resolve(tenant_id, spec.parent));
  if (parent_chain) {
    if (static_cast<int>(parent_chain->chain.size()) - 1 >= kMaxChainDepth) {  // minus the base
      return InvalidArgumentError(
          fmt::format("a chain of derived models may be at most {} deep", kMaxChainDepth),
          "parent");
    }
    base = parent_chain->base_model;
  } else if (base_exists_ && base_exists_(spec.parent)) {
    base = spec.parent;
  } else {
    return Error(Code::kNotFound, fmt::format("model '{}' does not exist", spec.parent), "parent",
                         "model_not_found");
  }
  json::array space_ids;
  for (const std::string& s : spec.spaces) {
    auto space = knowledge_.GetSpace(tenant_id, s);
    if (!space) {
      if (space.error().code == Code::kNotFound) {
        return Error(Code::kNotFound, fmt::format("space '{}' does not exist", s), "spaces");
      }
      return space.error();
    }
    space_ids.emplace_back(space->id);
  }
  YZ_ASSIGN_OR_RETURN(auto db, stores_.DatabaseOf(tenant_id));
  const std::string id = NewId("dm", clock_);
  auto s = db->Execute(
      "INSERT INTO studio_models (id, name, parent, base_model, description, instructions, "
      "spaces, retrieval, defaults, shared, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {id, spec.name, spec.parent, base, spec.description, spec.instructions,
       json::serialize(space_ids),
       spec.retrieval ? store::Value(json::serialize(RetrievalJson(*spec.retrieval)))
                      : store::Value(nullptr),
       DefaultsJson(spec.defaults), int64_t{spec.shared ? 1 : 0}, clock_.NowUnixMs()});
  if (!s) {
    if (s.error().code == Code::kAlreadyExists) {
      return Error(Code::kAlreadyExists, fmt::format("model '{}' already exists", spec.name), "name");
    }
    return s.error();
  }
  return Get(tenant_id, id);
}

Result<std::vector<DerivedModel>> Studio::List(std::string_view tenant_id) {
  std::vector<DerivedModel> out;
  YZ_ASSIGN_OR_RETURN(auto db, stores_.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto rows, db->Query(fmt::format("SELECT {} FROM studio_models ORDER BY name",
                                                       kColumns)));
  for (const auto& r : rows) out.push_back(FromRow(r, tenant_id));
  if (tenant_id != system_tenant_id_ && !system_tenant_id_.empty()) {
    YZ_ASSIGN_OR_RETURN(auto sys, stores_.DatabaseOf(system_tenant_id_));
    YZ_ASSIGN_OR_RETURN(auto shared, sys->Query(fmt::format("SELECT {} FROM studio_models WHERE "
                                                            "shared = 1 ORDER BY name",
                                                            kColumns)));
    for (const auto& r : shared) out.push_back(FromRow(r, system_tenant_id_));
  }
  return out;
}

Result<DerivedModel> Studio::Get(std::string_view tenant_id, std::string_view name) {
  YZ_ASSIGN_OR_RETURN(auto found, FindVisible(tenant_id, name));
  if (!found) {
    return Error(Code::kNotFound, fmt::format("model '{}' does not exist", name), "model",
                         "model_not_found");
  }
  return *found;
}

Status Studio::Delete(std::string_view tenant_id, std::string_view name) {
  YZ_ASSIGN_OR_RETURN(auto db, stores_.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto row, db->QueryOne("SELECT id, name FROM studio_models WHERE name = ? "
                                             "OR id = ?",
                                             {std::string(name), std::string(name)}));
  if (!row) {
    return Error(Code::kNotFound, fmt::format("model '{}' does not exist", name), "model",
                         "model_not_found");
  }
  YZ_ASSIGN_OR_RETURN(auto children, db->Query("SELECT name FROM studio_models WHERE parent = ?",
                                               {row->Text(1)}));
  if (!children.empty()) {
    return FailedPreconditionError(fmt::format(
        "model '{}' is the parent of '{}': delete that first", row->Text(1), children[0].Text(0)));
  }
  YZ_RETURN_IF_ERROR(db->Execute("DELETE FROM studio_models WHERE id = ?", {row->Text(0)}));
  return OkStatus();
}

Result<std::optional<ResolvedModel>> Studio::Resolve(std::string_view tenant_id,
                                                     std::string_view name) {
  YZ_ASSIGN_OR_RETURN(auto first, FindVisible(tenant_id, name));
  if (!first) return std::optional<ResolvedModel>();
  ResolvedModel out;
  out.owner_tenant_id = first->tenant_id;
  std::vector<DerivedModel> layers{*first};
  bool have_retrieval = false, have_temperature = false, have_top_p = false, have_max = false;
  for (;;) {
    const DerivedModel& m = layers.back();
    out.chain.push_back(m.name);
    if (m.retrieval && !have_retrieval) {
      out.retrieval = *m.retrieval;
      have_retrieval = true;
    }
    if (m.defaults.temperature && !have_temperature) {
      out.defaults.temperature = m.defaults.temperature;
      have_temperature = true;
    }
    if (m.defaults.top_p && !have_top_p) {
      out.defaults.top_p = m.defaults.top_p;
      have_top_p = true;
    }
    if (m.defaults.max_tokens && !have_max) {
      out.defaults.max_tokens = m.defaults.max_tokens;
      have_max = true;
    }
    if (static_cast<int>(layers.size()) > kMaxChainDepth) {
      return InvalidArgumentError(
          fmt::format("model '{}' has a chain deeper than {}", name, kMaxChainDepth));
    }
    // A layer's parent is looked up as its owner sees it.
    YZ_ASSIGN_OR_RETURN(auto parent, FindVisible(m.tenant_id, m.parent));
    if (!parent) {
      if (base_exists_ && !base_exists_(m.parent)) {
        return Error(Code::kNotFound, fmt::format("model '{}' derives from '{}', which no longer exists",
                                         m.name, m.parent),
                             "model", "model_not_found");
      }
      out.base_model = m.parent;
      break;
    }
    layers.push_back(std::move(*parent));
  }
  out.chain.push_back(out.base_model);
  // Outermost (closest to the base) first.
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    if (!it->instructions.empty()) out.instructions.push_back(it->instructions);
    for (const std::string& space_id : it->space_ids) {
      if (it->tenant_id != tenant_id) {
        // Another tenant's layer (a shared system model): only its shared spaces are readable.
        auto space = knowledge_.GetSpace(it->tenant_id, space_id);
        if (!space || !space->shared) continue;
      }
      knowledge::SpaceRef ref{it->tenant_id, space_id};
      const bool seen = std::any_of(out.spaces.begin(), out.spaces.end(), [&](const auto& s) {
        return s.tenant_id == ref.tenant_id && s.space_id == ref.space_id;
      });
      if (!seen) out.spaces.push_back(std::move(ref));
    }
  }
  return std::optional<ResolvedModel>(std::move(out));
}

Result<std::vector<std::string>> Studio::ModelsUsingSpace(std::string_view tenant_id,
                                                          std::string_view space_id) {
  YZ_ASSIGN_OR_RETURN(auto db, stores_.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto rows, db->Query("SELECT name, spaces FROM studio_models"));
  std::vector<std::string> out;
  for (const auto& r : rows) {
    if (r.Text(1).find(fmt::format("\"{}\"", space_id)) != std::string::npos) {
      out.push_back(r.Text(0));
    }
  }
  return out;
}

}  // namespace yunzhi::studio
