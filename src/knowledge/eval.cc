// BEIR / SQuAD loaders and ranking metrics.
#include "yunzhi/knowledge/eval.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace yunzhi::knowledge {
namespace {

namespace json = boost::json;

Result<std::string> ReadFile(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError(fmt::format("{}: no such file", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Calls `line_fn(line, line_number)` for each non-blank line (CR stripped).
template <typename F>
Status ForEachLine(const std::string& content, F&& line_fn) {
  size_t pos = 0, n = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) nl = content.size();
    std::string_view line(content.data() + pos, nl - pos);
    ++n;
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    YZ_RETURN_IF_ERROR(line_fn(line, n));
  }
  return OkStatus();
}

// A string field, or an integer one as decimal text; `required` fields must be present.
Result<std::string> Field(const json::object& o, std::string_view key, bool required) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) return InvalidArgumentError(fmt::format("missing \"{}\"", key));
    return std::string();
  }
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return InvalidArgumentError(fmt::format("\"{}\" is not a string", key));
}

Result<json::object> ParseObjectLine(std::string_view line) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return InvalidArgumentError(fmt::format("invalid JSON: {}", ec.message()));
  if (!v.is_object()) return InvalidArgumentError("not a JSON object");
  return std::move(v.get_object());
}

Error AtLine(const std::filesystem::path& path, size_t line, const Error& e) {
  return InvalidArgumentError(fmt::format("{}:{}: {}", path.string(), line, e.message));
}

std::vector<std::string_view> SplitTabs(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    size_t t = line.find('\t', pos);
    out.push_back(line.substr(pos, t == std::string_view::npos ? std::string_view::npos : t - pos));
    if (t == std::string_view::npos) break;
    pos = t + 1;
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

}  // namespace

Result<BeirDataset> LoadBeir(const std::filesystem::path& corpus, const std::filesystem::path& queries,
                             const std::filesystem::path& qrels) {
  BeirDataset data;
  YZ_ASSIGN_OR_RETURN(std::string corpus_text, ReadFile(corpus));
  YZ_RETURN_IF_ERROR(ForEachLine(corpus_text, [&](std::string_view line, size_t n) -> Status {
    auto o = ParseObjectLine(line);
    if (!o) return AtLine(corpus, n, o.error());
    BeirDocument d;
    auto id = Field(*o, "_id", true);
    auto title = Field(*o, "title", false);
    auto text = Field(*o, "text", true);
    for (auto* r : {&id, &title, &text}) {
      if (!*r) return AtLine(corpus, n, r->error());
    }
    data.corpus.push_back({std::move(*id), std::move(*title), std::move(*text)});
    return OkStatus();
  }));
  YZ_ASSIGN_OR_RETURN(std::string queries_text, ReadFile(queries));
  YZ_RETURN_IF_ERROR(ForEachLine(queries_text, [&](std::string_view line, size_t n) -> Status {
    auto o = ParseObjectLine(line);
    if (!o) return AtLine(queries, n, o.error());
    auto id = Field(*o, "_id", true);
    if (!id) return AtLine(queries, n, id.error());
    auto text = Field(*o, "text", true);
    if (!text) return AtLine(queries, n, text.error());
    data.queries.push_back({std::move(*id), std::move(*text)});
    return OkStatus();
  }));
  YZ_ASSIGN_OR_RETURN(std::string qrels_text, ReadFile(qrels));
  bool first = true;
  YZ_RETURN_IF_ERROR(ForEachLine(qrels_text, [&](std::string_view line, size_t n) -> Status {
    const bool is_first = first;
    first = false;
    auto cols = SplitTabs(line);
    // TREC layout "qid 0 docid grade" (space separated) is not BEIR; insist on three tabs fields.
    if (cols.size() != 3) {
      return AtLine(qrels, n, InvalidArgumentError(fmt::format(
                                  "expected 3 tab-separated fields, found {}", cols.size())));
    }
    int grade = 0;
    std::string score(cols[2]);
    size_t used = 0;
    try {
      grade = std::stoi(score, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != score.size()) {
      if (is_first) return OkStatus();  // a header line such as "query-id corpus-id score"
      return AtLine(qrels, n, InvalidArgumentError(fmt::format("score '{}' is not an integer", score)));
    }
    data.qrels[std::string(cols[0])][std::string(cols[1])] = grade;
    return OkStatus();
  }));
  return data;
}

Result<BeirDataset> LoadSquadAsBeir(const std::filesystem::path& squad_json) {
  YZ_ASSIGN_OR_RETURN(std::string text, ReadFile(squad_json));
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  auto bad = [&](std::string what) {
    return InvalidArgumentError(fmt::format("{}: {}", squad_json.string(), what));
  };
  if (ec) return bad(fmt::format("invalid JSON: {}", ec.message()));
  const json::value* data = root.is_object() ? root.get_object().if_contains("data") : nullptr;
  if (data == nullptr || !data->is_array()) return bad("no \"data\" array");
  BeirDataset out;
  std::set<std::string> doc_ids;
  size_t a = 0;
  for (const json::value& article : data->get_array()) {
    const size_t ai = a++;
    if (!article.is_object()) return bad(fmt::format("data[{}] is not an object", ai));
    const json::object& ao = article.get_object();
    auto title = Field(ao, "title", false);
    if (!title) return bad(fmt::format("data[{}]: {}", ai, title.error().message));
    const json::value* paragraphs = ao.if_contains("paragraphs");
    if (paragraphs == nullptr || !paragraphs->is_array()) {
      return bad(fmt::format("data[{}] has no \"paragraphs\" array", ai));
    }
    size_t p = 0;
    for (const json::value& para : paragraphs->get_array()) {
      const size_t pi = p++;
      const std::string where = fmt::format("data[{}].paragraphs[{}]", ai, pi);
      if (!para.is_object()) return bad(where + " is not an object");
      const json::object& po = para.get_object();
      auto context = Field(po, "context", true);
      if (!context) return bad(where + ": " + context.error().message);
      auto pid = Field(po, "id", false);
      if (!pid) return bad(where + ": " + pid.error().message);
      std::string doc_id = pid->empty() ? fmt::format("{}-{}", ai, pi) : *pid;
      if (!doc_ids.insert(doc_id).second) return bad(where + ": duplicate paragraph id " + doc_id);
      out.corpus.push_back({doc_id, *title, std::move(*context)});
      const json::value* qas = po.if_contains("qas");
      if (qas == nullptr) continue;
      if (!qas->is_array()) return bad(where + ".qas is not an array");
      size_t q = 0;
      for (const json::value& qa : qas->get_array()) {
        const size_t qi = q++;
        if (!qa.is_object()) return bad(fmt::format("{}.qas[{}] is not an object", where, qi));
        auto question = Field(qa.get_object(), "question", true);
        if (!question) return bad(fmt::format("{}.qas[{}]: {}", where, qi, question.error().message));
        auto qid = Field(qa.get_object(), "id", false);
        if (!qid) return bad(fmt::format("{}.qas[{}]: {}", where, qi, qid.error().message));
        std::string query_id = qid->empty() ? fmt::format("{}-q{}", doc_id, qi) : *qid;
        out.queries.push_back({query_id, std::move(*question)});
        out.qrels[query_id][doc_id] = 1;
      }
    }
  }
  return out;
}

RetrievalMetrics Evaluate(const BeirDataset& data,
                          const std::map<std::string, std::vector<std::string>>& run,
                          std::span<const double> latencies_ms) {
  RetrievalMetrics m;
  static const std::vector<std::string> kEmpty;
  for (const auto& [qid, judged] : data.qrels) {
    std::vector<int> grades;
    for (const auto& [doc, g] : judged) {
      if (g > 0) grades.push_back(g);
    }
    if (grades.empty()) continue;
    std::sort(grades.rbegin(), grades.rend());
    auto it = run.find(qid);
    const std::vector<std::string>& ranked = it == run.end() ? kEmpty : it->second;

    double dcg = 0, idcg = 0, rr = 0;
    size_t hits10 = 0, hits100 = 0, rank = 0;
    std::set<std::string_view> seen;
    for (const std::string& doc : ranked) {
      if (rank >= 100) break;
      if (!seen.insert(doc).second) continue;
      ++rank;  // 1-based rank of this document
      auto j = judged.find(doc);
      const int grade = j == judged.end() ? 0 : j->second;
      if (grade <= 0) continue;
      if (rank <= 10) {
        dcg += grade / std::log2(static_cast<double>(rank) + 1);
        ++hits10;
        if (rr == 0) rr = 1.0 / static_cast<double>(rank);
      }
      ++hits100;
    }
    for (size_t i = 0; i < grades.size() && i < 10; ++i) {
      idcg += grades[i] / std::log2(static_cast<double>(i) + 2);
    }
    m.ndcg_at_10 += dcg / idcg;
    m.recall_at_10 += static_cast<double>(hits10) / static_cast<double>(grades.size());
    m.recall_at_100 += static_cast<double>(hits100) / static_cast<double>(grades.size());
    m.mrr_at_10 += rr;
    ++m.n_queries;
  }
  if (m.n_queries > 0) {
    const auto n = static_cast<double>(m.n_queries);
    m.ndcg_at_10 /= n;
    m.recall_at_10 /= n;
    m.recall_at_100 /= n;
    m.mrr_at_10 /= n;
  }
  std::vector<double> lat(latencies_ms.begin(), latencies_ms.end());
  m.latency_p50_ms = Percentile(lat, 0.50);
  m.latency_p99_ms = Percentile(lat, 0.99);
  return m;
}

}  // namespace yunzhi::knowledge
