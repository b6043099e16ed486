// The FTS5 tokenizers "yunzhi", "yunzhi_chars" and "yunzhi_nostem": text_analysis.h's Analyze
// behind SQLite's fts5_tokenizer interface. Documents and queries are analysed alike, so a
// quoted query string re-tokenizes into the same terms that were indexed.
//
// Also the ranking function yunzhi_bm25: Okapi BM25 (k1 = 1.2, b = 0.75, as FTS5's bm25) with
// the Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5)) instead of FTS5's
// ln((N - df + 0.5) / (df + 0.5)) clamped at 1e-6. FTS5's idf gives no weight at all to a term
// in more than half the rows, which loses ranking signal on Chinese characters and short
// documents (measured in tests/knowledge/retrieval_quality_test.cc).
#include <cmath>
#include <new>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sqlite3.h>

#include "yunzhi/knowledge/text_analysis.h"

namespace yunzhi::knowledge {
namespace {

struct Instance {
  AnalyzerOptions options;
};

// Registration contexts: they must outlive every connection, hence static storage.
const AnalyzerOptions kWordsStem{CjkSegmentation::kWords, true, false};
const AnalyzerOptions kCharsStem{CjkSegmentation::kCharacters, true, false};
const AnalyzerOptions kWordsNoStem{CjkSegmentation::kWords, false, false};

int Create(void* context, const char** args, int n_args, Fts5Tokenizer** out) {
  auto* inst = new (std::nothrow) Instance{*static_cast<const AnalyzerOptions*>(context)};
  if (inst == nullptr) return SQLITE_NOMEM;
  for (int i = 0; i < n_args; ++i) {
    std::string_view a = args[i] ? args[i] : "";
    if (a == "stopwords") inst->options.stopwords = true;
    else if (a == "chars") inst->options.cjk = CjkSegmentation::kCharacters;
    else if (a == "words") inst->options.cjk = CjkSegmentation::kWords;
    else if (a == "nostem") inst->options.stem = false;
    else if (a == "stem") inst->options.stem = true;
    else {
      delete inst;
      return SQLITE_ERROR;
    }
  }
  *out = reinterpret_cast<Fts5Tokenizer*>(inst);
  return SQLITE_OK;
}

void Delete(Fts5Tokenizer* tokenizer) { delete reinterpret_cast<Instance*>(tokenizer); }

int Tokenize(Fts5Tokenizer* tokenizer, void* ctx, int /*flags*/, const char* text, int n_text,
             int (*token)(void*, int, const char*, int, int, int)) {
  // Query and document text get the same analysis (FTS5_TOKENIZE_QUERY included); prefix
  // queries see the stem of the prefix, as with FTS5's own porter wrapper.
  if (text == nullptr || n_text <= 0) return SQLITE_OK;
  const auto* inst = reinterpret_cast<const Instance*>(tokenizer);
  int rc = SQLITE_OK;
  try {
    ForEachTerm(std::string_view(text, static_cast<size_t>(n_text)), inst->options,
                [&](std::string_view term, size_t start, size_t end) {
                  rc = token(ctx, 0, term.data(), static_cast<int>(term.size()),
                             static_cast<int>(start), static_cast<int>(end));
                  return rc == SQLITE_OK;
                });
  } catch (const std::bad_alloc&) {
    return SQLITE_NOMEM;
  } catch (...) {
    return SQLITE_ERROR;
  }
  return rc;
}

fts5_api* GetFts5Api(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &stmt, nullptr) != SQLITE_OK) return nullptr;
  sqlite3_bind_pointer(stmt, 1, &api, "fts5_api_ptr", nullptr);
  sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  return api;
}

// Per-query data of yunzhi_bm25, computed at the first row and kept as FTS5 auxdata.
struct Bm25Query {
  std::vector<double> idf;  // per phrase
  double avg_row_tokens = 1;
};

int CountRow(const Fts5ExtensionApi*, Fts5Context*, void* user) {
  ++*static_cast<sqlite3_int64*>(user);
  return SQLITE_OK;
}

void DeleteBm25Query(void* p) { delete static_cast<Bm25Query*>(p); }

// yunzhi_bm25(table [, weight of column 0, weight of column 1, ...]): lower is better, like bm25().
void YunzhiBm25(const Fts5ExtensionApi* api, Fts5Context* fts, sqlite3_context* ctx, int n_args,
                sqlite3_value** args) {
  constexpr double kK1 = 1.2, kB = 0.75;
  const int n_phrases = api->xPhraseCount(fts);
  auto* q = static_cast<Bm25Query*>(api->xGetAuxdata(fts, 0));
  if (q == nullptr) {
    q = new (std::nothrow) Bm25Query;
    if (q == nullptr) {
      sqlite3_result_error_nomem(ctx);
      return;
    }
    sqlite3_int64 n_rows = 0, n_tokens = 0;
    int rc = api->xRowCount(fts, &n_rows);
    if (rc == SQLITE_OK) rc = api->xColumnTotalSize(fts, -1, &n_tokens);
    q->avg_row_tokens = n_rows > 0 ? static_cast<double>(n_tokens) / static_cast<double>(n_rows) : 1;
    if (q->avg_row_tokens <= 0) q->avg_row_tokens = 1;
    for (int i = 0; i < n_phrases && rc == SQLITE_OK; ++i) {
      sqlite3_int64 df = 0;
      rc = api->xQueryPhrase(fts, i, &df, CountRow);
      const double n = static_cast<double>(n_rows), d = static_cast<double>(df);
      q->idf.push_back(std::log(1 + (n - d + 0.5) / (d + 0.5)));
    }
    if (rc == SQLITE_OK) rc = api->xSetAuxdata(fts, q, DeleteBm25Query);
    else delete q;
    if (rc != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
  }
  std::vector<double> tf(static_cast<size_t>(n_phrases), 0.0);
  int n_inst = 0;
  int rc = api->xInstCount(fts, &n_inst);
  for (int i = 0; i < n_inst && rc == SQLITE_OK; ++i) {
    int phrase = 0, column = 0, offset = 0;
    rc = api->xInst(fts, i, &phrase, &column, &offset);
    if (rc != SQLITE_OK || phrase < 0 || phrase >= n_phrases) continue;
    const double weight = column < n_args ? sqlite3_value_double(args[column]) : 1.0;
    tf[static_cast<size_t>(phrase)] += weight;
  }
  int row_tokens = 0;
  if (rc == SQLITE_OK) rc = api->xColumnSize(fts, -1, &row_tokens);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  const double norm = kK1 * (1 - kB + kB * row_tokens / q->avg_row_tokens);
  double score = 0;
  for (int i = 0; i < n_phrases && static_cast<size_t>(i) < q->idf.size(); ++i) {
    const double f = tf[static_cast<size_t>(i)];
    if (f > 0) score += q->idf[static_cast<size_t>(i)] * f * (kK1 + 1) / (f + norm);
  }
  sqlite3_result_double(ctx, -score);
}

}  // namespace

Status RegisterFts5Tokenizers(sqlite3* db) {
  if (db == nullptr) return InternalError("RegisterFts5Tokenizers: no connection");
  fts5_api* api = GetFts5Api(db);
  if (api == nullptr || api->iVersion < 2) {
    return InternalError("SQLite has no FTS5: cannot register the yunzhi tokenizers");
  }
  fts5_tokenizer tokenizer{Create, Delete, Tokenize};
  const std::pair<const char*, const AnalyzerOptions*> kTokenizers[] = {
      {"yunzhi", &kWordsStem}, {"yunzhi_chars", &kCharsStem}, {"yunzhi_nostem", &kWordsNoStem}};
  for (const auto& [name, options] : kTokenizers) {
    int rc = api->xCreateTokenizer(api, name, const_cast<AnalyzerOptions*>(options), &tokenizer,
                                   nullptr);
    if (rc != SQLITE_OK) {
      return InternalError(fmt::format("registering FTS5 tokenizer '{}': {}", name, sqlite3_errstr(rc)));
    }
  }
  if (int rc = api->xCreateFunction(api, "yunzhi_bm25", nullptr, YunzhiBm25, nullptr); rc != SQLITE_OK) {
    return InternalError(fmt::format("registering FTS5 function yunzhi_bm25: {}", sqlite3_errstr(rc)));
  }
  return OkStatus();
}

}  // namespace yunzhi::knowledge
