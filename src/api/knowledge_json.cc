#include "api/knowledge_json.h"

#include <fmt/format.h>

#include "yunzhi/base/log.h"

#include "api/route_util.h"

namespace yunzhi::api {

namespace json = boost::json;

namespace {

json::array Strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

json::object RetrievalJson(const knowledge::RetrievalSettings& r) {
  return {
      {"top_k", r.top_k},
      {"score_threshold", r.score_threshold},
      {"mode", std::string(knowledge::RetrievalModeName(r.mode))},
      {"lexical_weight", r.lexical_weight},
      {"vector_weight", r.vector_weight},
      {"rerank_model", r.rerank_model.empty() ? json::value(nullptr) : json::value(r.rerank_model)},
      {"candidates", r.candidates}};
}

}  // namespace

json::object SpaceJson(const knowledge::Space& s) {
  return {{"id", s.id},
          {"object", "knowledge_space"},
          {"name", s.name},
          {"description", s.description},
          {"embedding_model",
           s.embedding_model.empty() ? json::value(nullptr) : json::value(s.embedding_model)},
          {"chunk_size", s.chunking.max_tokens},
          {"chunk_overlap", s.chunking.overlap_tokens},
          {"shared", s.shared},
          {"documents", s.documents},
          {"chunks", s.chunks},
          {"bytes", s.bytes},
          {"created_at", s.created_at_ms / 1000}};
}

json::object DocumentJson(const knowledge::Document& d) {
  return {{"id", d.id},
          {"object", "document"},
          {"space_id", d.space_id},
          {"job_id", d.job_id},
          {"name", d.name},
          {"sha256", d.sha256},
          {"bytes", d.size_bytes},
          {"mime_type", d.mime_type.empty() ? json::value(nullptr) : json::value(d.mime_type)},
          {"status", std::string(knowledge::DocumentStatusName(d.status))},
          {"error", d.error.empty() ? json::value(nullptr) : json::value(d.error)},
          {"pages", d.pages},
          {"ocr_pages", d.ocr_pages},
          {"chunks", d.chunks},
          {"created_at", d.created_at_ms / 1000},
          {"updated_at", d.updated_at_ms / 1000}};
}

json::object JobJson(const knowledge::Job& j) {
  json::array files;
  for (const auto& f : j.files) {
    files.push_back(json::object{
        {"name", f.name},
        {"document_id", f.document_id.empty() ? json::value(nullptr) : json::value(f.document_id)},
        {"duplicate", f.duplicate},
        {"status", f.status},
        {"error", f.error.empty() ? json::value(nullptr) : json::value(f.error)}});
  }
  return {
      {"id", j.id},
      {"object", "ingestion_job"},
      {"space_id", j.space_id},
      {"status", j.status},
      {"total", j.total},
      {"done", j.done},
      {"failed", j.failed},
      {"progress", j.total == 0 ? 1.0 : static_cast<double>(j.done) / static_cast<double>(j.total)},
      {"files", std::move(files)},
      {"created_at", j.created_at_ms / 1000}};
}

json::object HitJson(const knowledge::SearchHit& h) {
  auto opt = [](const std::optional<double>& v) {
    return v ? json::value(*v) : json::value(nullptr);
  };
  return {{"object", "search_hit"},
          {"chunk_id", h.chunk_id},
          {"space_id", h.space_id},
          {"document_id", h.document_id},
          {"document", h.document_name},
          {"text", h.text},
          {"section_path", Strings(h.section_path)},
          {"page", h.page == 0 ? json::value(nullptr) : json::value(h.page)},
          {"char_start", h.char_start},
          {"char_end", h.char_end},
          {"score", h.score},
          {"lexical_score", opt(h.lexical_score)},
          {"vector_score", opt(h.vector_score)},
          {"rerank_score", opt(h.rerank_score)}};
}

json::object DerivedModelJson(const studio::DerivedModel& m) {
  json::object d;
  if (m.defaults.temperature) d["temperature"] = *m.defaults.temperature;
  if (m.defaults.top_p) d["top_p"] = *m.defaults.top_p;
  if (m.defaults.max_tokens) d["max_tokens"] = *m.defaults.max_tokens;
  return {
      {"id", m.name},
      {"object", "derived_model"},
      {"model_id", m.id},
      {"name", m.name},
      {"kind", "derived"},
      {"parent", m.parent},
      {"base_model", m.base_model},
      {"description", m.description},
      {"instructions", m.instructions},
      {"spaces", Strings(m.space_ids)},
      {"retrieval", m.retrieval ? json::value(RetrievalJson(*m.retrieval)) : json::value(nullptr)},
      {"defaults", std::move(d)},
      {"shared", m.shared},
      {"created_at", m.created_at_ms / 1000}};
}

json::object DerivedModelOpenAiJson(const studio::DerivedModel& m) {
  return {{"id", m.name},
          {"object", "model"},
          {"created", m.created_at_ms / 1000},
          {"owned_by", m.shared ? std::string("system") : m.tenant_id},
          {"parent", m.parent},
          {"kind", "derived"}};
}

void Audit(const AppContext& ctx, const platform::Principal& p, std::string_view action,
           std::string_view target, json::object details) {
  if (!ctx.audit_event) return;
  ctx.audit_event(p, action, target, json::serialize(details));
}

ClientSet ClientSetOf(const json::object& body) {
  auto set = [&](std::string_view k) {
    auto it = body.find(k);
    return it != body.end() && !it->value().is_null();
  };
  return {set("temperature"), set("top_p"), set("max_tokens") || set("max_completion_tokens")};
}

namespace {

// The text of the last user message (the retrieval query).
std::string LastUserText(const engine::TemplateValue& messages) {
  if (!messages.is_array()) return {};
  const auto& list = messages.as_array();
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    const auto* role = it->Find("role");
    if (role == nullptr || !role->is_string() || role->as_string() != "user") continue;
    const auto* content = it->Find("content");
    if (content != nullptr && content->is_string()) return content->as_string();
  }
  return {};
}

std::string SourceLabel(const knowledge::SearchHit& h) {
  std::string label = h.document_name;
  if (h.page > 0) label += fmt::format(", page {}", h.page);
  if (!h.section_path.empty())
    label += ", section \"" + knowledge::JoinSectionPath(h.section_path) + "\"";
  return label;
}

}  // namespace

Result<std::optional<DerivedChat>> PrepareDerivedChat(const AppContext& ctx,
                                                      const platform::Principal& p,
                                                      const ClientSet& set,
                                                      ChatCompletionRequest& req) {
  if (ctx.studio == nullptr) return std::optional<DerivedChat>();
  YZ_ASSIGN_OR_RETURN(auto resolved, ctx.studio->Resolve(p.tenant_id, req.model));
  if (!resolved) return std::optional<DerivedChat>();
  DerivedChat chat;
  chat.called_model = req.model;
  chat.chain = resolved->chain;

  const std::string query = LastUserText(req.messages);
  if (!resolved->spaces.empty() && ctx.knowledge != nullptr &&
      query.find_first_not_of(" \t\r\n") != std::string::npos) {
    YZ_ASSIGN_OR_RETURN(chat.sources,
                        ctx.knowledge->Search(resolved->spaces, query, resolved->retrieval));
  }

  std::string system;
  for (const std::string& layer : resolved->instructions) {
    if (!system.empty()) system += "\n\n";
    system += layer;
  }
  if (!resolved->spaces.empty()) {
    if (!system.empty()) system += "\n\n";
    if (chat.sources.empty()) {
      system +=
          "No passage of the knowledge base matches this question. Say that the knowledge base "
          "does not cover it rather than guessing.";
    } else {
      system +=
          "Answer from the numbered sources below. Cite the sources you use with their numbers "
          "in square brackets, like [1]. If the sources do not contain the answer, say so.\n\n"
          "Sources:";
      for (size_t i = 0; i < chat.sources.size(); ++i) {
        const auto& h = chat.sources[i];
        system += fmt::format("\n\n[{}] ({})\n{}", i + 1, SourceLabel(h), h.text);
      }
    }
  }
  if (!system.empty() && req.messages.is_array()) {
    auto& list = req.messages.as_array();
    bool merged = false;
    if (!list.empty() && list.front().is_object()) {
      auto& first = list.front().as_object();
      for (auto& [k, v] : first) {
        if (k == "role" && v.is_string() && v.as_string() == "system") merged = true;
      }
      if (merged) {
        // One system message: the model's layers, then the client's own instructions.
        for (auto& [k, v] : first) {
          if (k == "content") {
            std::string own = v.is_string() ? v.as_string() : std::string();
            v = engine::TemplateValue(system + (own.empty() ? "" : "\n\n" + own));
          }
        }
      }
    }
    if (!merged) {
      engine::TemplateValue::Object msg{{"role", engine::TemplateValue("system")},
                                        {"content", engine::TemplateValue(system)}};
      list.insert(list.begin(), engine::TemplateValue(std::move(msg)));
    }
  }
  const auto& d = resolved->defaults;
  if (d.temperature && !set.temperature)
    req.params.sampling.temperature = static_cast<float>(*d.temperature);
  if (d.top_p && !set.top_p) req.params.sampling.top_p = static_cast<float>(*d.top_p);
  if (d.max_tokens && !set.max_tokens) req.params.max_tokens = static_cast<int32_t>(*d.max_tokens);
  req.model = resolved->base_model;
  log::Info("derived_model_resolved", {{"model", chat.called_model},
                                       {"base_model", resolved->base_model},
                                       {"sources", static_cast<int64_t>(chat.sources.size())}});
  return std::optional<DerivedChat>(std::move(chat));
}

json::array CitationsJson(const DerivedChat& chat, std::string_view answer) {
  json::array out;
  for (size_t i = 0; i < chat.sources.size(); ++i) {
    const auto& h = chat.sources[i];
    const std::string marker = fmt::format("[{}]", i + 1);
    out.push_back(
        json::object{{"index", i + 1},
                     {"marker", marker},
                     {"cited", answer.find(marker) != std::string_view::npos},
                     {"document_id", h.document_id},
                     {"document", h.document_name},
                     {"space_id", h.space_id},
                     {"page", h.page == 0 ? json::value(nullptr) : json::value(h.page)},
                     {"section", h.section_path.empty()
                                     ? json::value(nullptr)
                                     : json::value(knowledge::JoinSectionPath(h.section_path))},
                     {"quote", h.text},
                     {"char_start", h.char_start},
                     {"char_end", h.char_end},
                     {"score", h.score}});
  }
  return out;
}

}  // namespace yunzhi::api
