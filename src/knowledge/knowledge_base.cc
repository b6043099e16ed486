#include "yunzhi/knowledge/knowledge_base.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <sqlite3.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/ids.h"
#include "yunzhi/base/log.h"
#include "yunzhi/knowledge/ingest.h"
#include "yunzhi/knowledge/text_analysis.h"
#include "knowledge/vector_index.h"

namespace yunzhi::knowledge {

namespace json = boost::json;

std::string_view DocumentStatusName(DocumentStatus s) {
  switch (s) {
    case DocumentStatus::kQueued: return "queued";
    case DocumentStatus::kProcessing: return "processing";
    case DocumentStatus::kReady: return "ready";
    case DocumentStatus::kFailed: return "failed";
  }
  return "unknown";
}

namespace {

DocumentStatus ParseStatus(std::string_view s) {
  if (s == "processing") return DocumentStatus::kProcessing;
  if (s == "ready") return DocumentStatus::kReady;
  if (s == "failed") return DocumentStatus::kFailed;
  return DocumentStatus::kQueued;
}

}  // namespace

std::string_view RetrievalModeName(RetrievalMode m) {
  switch (m) {
    case RetrievalMode::kAuto: return "auto";
    case RetrievalMode::kLexical: return "lexical";
    case RetrievalMode::kVector: return "vector";
    case RetrievalMode::kHybrid: return "hybrid";
  }
  return "auto";
}

Result<RetrievalMode> ParseRetrievalMode(std::string_view name) {
  for (RetrievalMode m : {RetrievalMode::kAuto, RetrievalMode::kLexical, RetrievalMode::kVector,
                          RetrievalMode::kHybrid}) {
    if (name == RetrievalModeName(m)) return m;
  }
  return InvalidArgumentError(
      fmt::format("unknown retrieval mode '{}' (auto, lexical, vector or hybrid)", name), "mode");
}

std::string JoinSectionPath(const std::vector<std::string>& path) {
  std::string out;
  for (const auto& p : path) {
    if (!out.empty()) out += " > ";
    out += p;
  }
  return out;
}

std::vector<store::Migration> KnowledgeBase::Migrations() {
  return {{1, "knowledge spaces, documents, jobs and chunks",
           R"sql(
CREATE TABLE kb_spaces (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  embedding_model TEXT NOT NULL DEFAULT '',
  chunk_max_tokens INTEGER NOT NULL,
  chunk_overlap_tokens INTEGER NOT NULL,
  shared INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE kb_jobs (
  id TEXT PRIMARY KEY,
  space_id TEXT NOT NULL REFERENCES kb_spaces(id) ON DELETE CASCADE,
  files TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE kb_documents (
  id TEXT PRIMARY KEY,
  space_id TEXT NOT NULL REFERENCES kb_spaces(id) ON DELETE CASCADE,
  job_id TEXT NOT NULL,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  blob TEXT NOT NULL,
  sealed INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  pages INTEGER NOT NULL DEFAULT 0,
  ocr_pages INTEGER NOT NULL DEFAULT 0,
  chunks INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  UNIQUE (space_id, sha256)
);
CREATE INDEX kb_documents_by_status ON kb_documents(status);
CREATE INDEX kb_documents_by_job ON kb_documents(job_id);
CREATE INDEX kb_documents_by_sha ON kb_documents(sha256);
CREATE TABLE kb_chunks (
  id INTEGER PRIMARY KEY,
  document_id TEXT NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
  space_id TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  sealed INTEGER NOT NULL,
  heading BLOB NOT NULL,
  text BLOB NOT NULL,
  section_path BLOB NOT NULL,
  page INTEGER NOT NULL,
  char_start INTEGER NOT NULL,
  char_end INTEGER NOT NULL,
  n_tokens INTEGER NOT NULL,
  vector BLOB
);
CREATE INDEX kb_chunks_by_document ON kb_chunks(document_id);
CREATE INDEX kb_chunks_by_space ON kb_chunks(space_id);
)sql",
           ""},
          {2, "keyed full-text index terms, sealed document names and job file lists",
           R"sql(
ALTER TABLE kb_spaces ADD COLUMN index_format INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kb_documents ADD COLUMN name_sealed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kb_jobs ADD COLUMN files_sealed INTEGER NOT NULL DEFAULT 0;
)sql",
           ""}};
}

Status KnowledgeBase::RegisterSqliteFunctions(sqlite3* db) {
  YZ_RETURN_IF_ERROR(RegisterFts5Tokenizers(db));
  // Searches read the full-text index at random: map the file instead of a pread(2) per page
  // (measured: half of a lexical query's time at 100,000 chunks was in pread and the kernel),
  // and keep more of it in each connection's page cache.
  char* err = nullptr;
  if (sqlite3_exec(db, "PRAGMA mmap_size = 4294967296; PRAGMA cache_size = -65536", nullptr,
                   nullptr, &err) != SQLITE_OK) {
    std::string why = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    return InternalError("cannot configure the knowledge database: " + why);
  }
  return OkStatus();
}

namespace {

constexpr std::string_view kSpaceColumns =
    "s.id, s.name, s.description, s.embedding_model, s.chunk_max_tokens, s.chunk_overlap_tokens, "
    "s.shared, s.created_at_ms, "
    "(SELECT count(*) FROM kb_documents d WHERE d.space_id = s.id), "
    "(SELECT coalesce(sum(d.chunks), 0) FROM kb_documents d WHERE d.space_id = s.id), "
    "(SELECT coalesce(sum(d.size_bytes), 0) FROM kb_documents d WHERE d.space_id = s.id)";

Space SpaceFromRow(const store::Row& r) {
  Space s;
  s.id = r.Text(0);
  s.name = r.Text(1);
  s.description = r.Text(2);
  s.embedding_model = r.Text(3);
  s.chunking.max_tokens = static_cast<int>(r.Int(4));
  s.chunking.overlap_tokens = static_cast<int>(r.Int(5));
  s.shared = r.Int(6) != 0;
  s.created_at_ms = r.Int(7);
  s.documents = r.Int(8);
  s.chunks = r.Int(9);
  s.bytes = r.Int(10);
  return s;
}

constexpr std::string_view kDocumentColumns =
    "id, space_id, job_id, name, sha256, size_bytes, mime_type, status, error, pages, ocr_pages, "
    "chunks, created_at_ms, updated_at_ms, blob, sealed, name_sealed";

// The name as stored: State::DocumentOf opens it when it is sealed.
Document DocumentFromRow(const store::Row& r) {
  Document d;
  d.id = r.Text(0);
  d.space_id = r.Text(1);
  d.job_id = r.Text(2);
  d.name = r.Text(3);
  d.sha256 = r.Text(4);
  d.size_bytes = r.Int(5);
  d.mime_type = r.Text(6);
  d.status = ParseStatus(r.Text(7));
  d.error = r.Text(8);
  d.pages = r.Int(9);
  d.ocr_pages = r.Int(10);
  d.chunks = r.Int(11);
  d.created_at_ms = r.Int(12);
  d.updated_at_ms = r.Int(13);
  return d;
}

std::string FtsTable(std::string_view space_id) { return fmt::format("\"fts_{}\"", space_id); }

// How a space's full-text index holds its terms (kb_spaces.index_format).
enum IndexFormat : int64_t {
  // tokenize='yunzhi': SQLite analyses the text itself, so the index holds the terms in clear.
  // Spaces created without a tenant key, and spaces written before index terms were keyed.
  kPlainTerms = 0,
  // tokenize='ascii': the text is analysed here and each term replaced by its keyed hash token
  // (crypto::TermHasher), so neither the key nor a word ever reaches SQLite.
  kKeyedTerms = 1,
};

// The purpose under which a space's term-hashing key is derived from the tenant's data key: one
// key per space, so equal words in two spaces give unrelated tokens.
std::string TermKeyPurpose(std::string_view space_id) {
  return fmt::format("fts-terms:{}", space_id);
}

// Associated data of sealed names and job file lists: a sealed value moved to another row fails
// to open.
std::string NameAd(std::string_view document_id) { return fmt::format("name:{}", document_id); }
std::string JobFilesAd(std::string_view job_id) { return fmt::format("job-files:{}", job_id); }

// The FTS5 table of a space (contentless: only the index is stored), its fts5vocab companion
// (document frequencies, for pruning very common query terms) and its ranking: BM25 (k1 1.2,
// b 0.75; text_analysis.h) with headings (section paths) weighing twice the body.
Status CreateFtsTables(store::Executor& ex, std::string_view space_id, int64_t format) {
  const std::string fts = FtsTable(space_id);
  YZ_RETURN_IF_ERROR(ex.Execute(
      fmt::format("CREATE VIRTUAL TABLE {} USING fts5(heading, body, content='', tokenize='{}')",
                  fts, format == kKeyedTerms ? "ascii" : "yunzhi")));
  YZ_RETURN_IF_ERROR(ex.Execute(fmt::format(
      "CREATE VIRTUAL TABLE \"fts_{}_vocab\" USING fts5vocab({}, 'row')", space_id, fts)));
  YZ_RETURN_IF_ERROR(ex.Execute(
      fmt::format("INSERT INTO {0} ({0}, rank) VALUES ('rank', 'yunzhi_bm25(2.0, 1.0)')", fts)));
  return OkStatus();
}

// What a chunk's column contributes to (and must be given again to delete from) the space's
// FTS5 table: the text itself for plain-term spaces; for keyed spaces the tokens of its analysed
// terms (as the "yunzhi" tokenizer would analyse it: CJK words, Porter stems), in text order,
// space-separated. The table is contentless, so not even this string is stored — only the index.
// One token per term keeps every count BM25 uses (term frequencies, column sizes, document
// frequencies) as it was with plain terms.
std::string IndexText(const crypto::TermHasher* hasher, std::string_view text) {
  if (hasher == nullptr) return std::string(text);
  std::string out;
  out.reserve(text.size() * 3);  // a term of 3 to 8 bytes becomes 17
  ForEachTerm(text, AnalyzerOptions{}, [&](std::string_view term, size_t, size_t) {
    if (!out.empty()) out += ' ';
    hasher->AppendToken(term, &out);
    return true;
  });
  return out;
}

Status ValidateSpaceName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return InvalidArgumentError("a space name must be 1 to 64 characters long", "name");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && (i == 0 || (c != '_' && c != '-' && c != '.'))) {
      return InvalidArgumentError(
          fmt::format("invalid space name '{}': use letters, digits, '_', '-' and '.', starting "
                      "with a letter or digit",
                      name),
          "name");
    }
  }
  return OkStatus();
}

std::string VectorBytes(std::span<const float> v) {
  std::string out(v.size() * sizeof(float), '\0');
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<float> VectorFromBytes(std::string_view b) {
  std::vector<float> v(b.size() / sizeof(float));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

std::string PathJson(const std::vector<std::string>& path) {
  json::array a;
  for (const auto& p : path) a.emplace_back(p);
  return json::serialize(a);
}

std::vector<std::string> PathFromJson(std::string_view text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& e : v.as_array()) {
    if (e.is_string()) out.emplace_back(e.as_string());
  }
  return out;
}

std::string Bytes(const store::Value& v) {
  if (const auto* b = std::get_if<store::Blob>(&v)) return b->bytes;
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct KnowledgeBase::State {
  store::TenantStores& stores;
  KnowledgeOptions options;
  const Clock& clock;

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::condition_variable idle_cv;
  std::deque<std::pair<std::string, std::string>> queue;  // (tenant, document id)
  std::set<std::pair<std::string, std::string>> queued;   // what `queue` holds, deduplicated
  int busy = 0;
  bool stopping = false;
  std::vector<std::thread> workers;
  std::thread warmer;  // builds the vector indexes of existing spaces after Recover()

  std::mutex vectors_mutex;
  std::mutex index_build_mutex;
  // (tenant, space) -> the space's HNSW index, built on first vector search.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<VectorIndex>> vectors;

  State(store::TenantStores& s, KnowledgeOptions o, const Clock& c)
      : stores(s), options(std::move(o)), clock(c) {}

  // ---- sealing
  Result<std::shared_ptr<const crypto::DataCipher>> Cipher(std::string_view tenant) {
    if (!options.ciphers) return std::shared_ptr<const crypto::DataCipher>();
    return options.ciphers(tenant);
  }
  static std::string Seal(const std::shared_ptr<const crypto::DataCipher>& c, std::string_view plain,
                          std::string_view ad) {
    return c ? c->Seal(plain, ad) : std::string(plain);
  }
  Result<std::string> Unseal(std::string_view tenant, bool sealed, std::string bytes,
                             std::string_view ad) {
    if (!sealed) return bytes;
    YZ_ASSIGN_OR_RETURN(auto c, Cipher(tenant));
    if (!c) return InternalError("data is sealed but no tenant key is available");
    return c->Open(bytes, ad);
  }

  // The term hasher of a space's full-text index: null for a plain-term index.
  // Errors: the cipher provider's; kFailedPrecondition when the index is keyed and the tenant has
  // no key (the index cannot be written or searched without it).
  Result<std::shared_ptr<const crypto::TermHasher>> Hasher(std::string_view tenant,
                                                           std::string_view space_id,
                                                           int64_t format) {
    if (format != kKeyedTerms) return std::shared_ptr<const crypto::TermHasher>();
    YZ_ASSIGN_OR_RETURN(auto c, Cipher(tenant));
    if (!c) {
      return FailedPreconditionError(fmt::format(
          "the full-text index of space '{}' is keyed with the tenant's data key, and no key is "
          "available",
          space_id));
    }
    YZ_ASSIGN_OR_RETURN(auto h, crypto::TermHasher::Create(c->DeriveKey(TermKeyPurpose(space_id))));
    return std::shared_ptr<const crypto::TermHasher>(std::move(h));
  }

  // A document row (kDocumentColumns) with its name opened.
  Result<Document> DocumentOf(std::string_view tenant, const store::Row& r) {
    Document d = DocumentFromRow(r);
    if (r.Int(16) != 0) {
      YZ_ASSIGN_OR_RETURN(d.name, Unseal(tenant, true, Bytes(r.at(3)), NameAd(d.id)));
    }
    return d;
  }

  Result<int64_t> IndexFormatOf(store::Executor& ex, const std::string& space_id) {
    YZ_ASSIGN_OR_RETURN(auto row,
                        ex.QueryOne("SELECT index_format FROM kb_spaces WHERE id = ?", {space_id}));
    if (!row) return NotFoundError(fmt::format("space '{}' does not exist", space_id));
    return row->Int(0);
  }

  // ---- queue
  void Enqueue(std::string tenant, std::string doc) {
    {
      std::lock_guard lock(queue_mutex);
      auto key = std::make_pair(tenant, doc);
      if (!queued.insert(key).second) return;
      queue.push_back(std::move(key));
    }
    queue_cv.notify_one();
  }

  void WorkerLoop() {
    for (;;) {
      std::pair<std::string, std::string> item;
      {
        std::unique_lock lock(queue_mutex);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) return;
        item = std::move(queue.front());
        queue.pop_front();
        queued.erase(item);
        ++busy;
      }
      try {
        Process(item.first, item.second);
      } catch (const std::exception& e) {
        MarkFailed(item.first, item.second, fmt::format("internal error: {}", e.what()));
      }
      {
        std::lock_guard lock(queue_mutex);
        --busy;
      }
      idle_cv.notify_all();
    }
  }

  void MarkFailed(const std::string& tenant, const std::string& doc_id, const std::string& why) {
    auto db = stores.DatabaseOf(tenant);
    if (!db) return;
    (void)(*db)->Execute(
        "UPDATE kb_documents SET status = 'failed', error = ?, updated_at_ms = ? WHERE id = ?",
        {why, clock.NowUnixMs(), doc_id});
    Report(tenant, **db, doc_id);
  }

  void Report(const std::string& tenant, store::Database& db, const std::string& doc_id,
              std::string embedding_model = {}, int64_t embedding_tokens = 0) {
    if (!options.on_document_done) return;
    auto row = db.QueryOne(fmt::format("SELECT {} FROM kb_documents WHERE id = ?", kDocumentColumns),
                           {doc_id});
    if (!row || !*row) return;
    IngestReport report;
    report.tenant_id = tenant;
    auto doc = DocumentOf(tenant, **row);
    // Metering must not depend on the name: a name that cannot be opened is reported empty.
    report.document = doc ? std::move(*doc) : DocumentFromRow(**row);
    if (!doc) report.document.name.clear();
    report.embedding_model = std::move(embedding_model);
    report.embedding_tokens = embedding_tokens;
    options.on_document_done(report);
  }

  // One document from queued to ready or failed.
  void Process(const std::string& tenant, const std::string& doc_id) {
    auto db_or = stores.DatabaseOf(tenant);
    if (!db_or) return;
    store::Database& db = **db_or;
    auto row = db.QueryOne(
        fmt::format("SELECT {} FROM kb_documents WHERE id = ? AND status IN ('queued', "
                    "'processing')",
                    kDocumentColumns),
        {doc_id});
    if (!row || !*row) return;  // deleted, or done by someone else
    const std::string blob = (*row)->Text(14);
    const bool sealed = (*row)->Int(15) != 0;
    auto space_row = db.QueryOne(
        fmt::format("SELECT {} FROM kb_spaces s WHERE s.id = ?", kSpaceColumns), {(*row)->Text(1)});
    if (!space_row || !*space_row) return;
    const Space space = SpaceFromRow(**space_row);
    (void)db.Execute("UPDATE kb_documents SET status = 'processing', updated_at_ms = ? WHERE id = ?",
                     {clock.NowUnixMs(), doc_id});

    // Logs name the document by id only: its name is tenant data, sealed at rest.
    auto fail = [&](const std::string& why) {
      log::Warn("document_failed",
                {{"tenant_id", tenant}, {"document_id", doc_id}, {"error", why}});
      MarkFailed(tenant, doc_id, why);
    };
    auto opened = DocumentOf(tenant, **row);
    if (!opened) return fail(opened.error().message);
    const Document doc = std::move(*opened);

    auto blobs = stores.Blobs(tenant);
    if (!blobs) return fail(blobs.error().message);
    auto stored = (*blobs)->Get(blob);
    if (!stored) return fail(fmt::format("stored file unreadable: {}", stored.error().message));
    auto bytes = Unseal(tenant, sealed, std::move(*stored), tenant + ":" + doc.sha256);
    if (!bytes) return fail(bytes.error().message);

    ExtractOptions extract_options;
    extract_options.ocr = options.ocr;
    auto extracted = Extract(*bytes, doc.name, extract_options);
    if (!extracted) return fail(extracted.error().message);
    auto chunks = ChunkDocument(*extracted, space.chunking);
    if (!chunks) return fail(chunks.error().message);
    if (chunks->empty()) return fail("no text could be extracted from the document");

    std::vector<std::vector<float>> vectors;
    int64_t embedding_tokens = 0;
    bool tokens_known = true;
    if (!space.embedding_model.empty()) {
      if (!options.embedder) {
        return fail(fmt::format("space '{}' needs embedding model '{}' but no embedder is "
                                "configured",
                                space.name, space.embedding_model));
      }
      std::vector<std::string> texts;
      for (const Chunk& c : *chunks) {
        std::string heading = JoinSectionPath(c.section_path);
        texts.push_back(heading.empty() ? c.text : heading + "\n\n" + c.text);
      }
      constexpr size_t kBatch = 32;
      for (size_t i = 0; i < texts.size(); i += kBatch) {
        size_t n = std::min(kBatch, texts.size() - i);
        auto v = options.embedder(space.embedding_model, std::span(texts).subspan(i, n));
        if (!v) {
          return fail(fmt::format("embedding with model '{}' failed: {}", space.embedding_model,
                                  v.error().message));
        }
        if (v->vectors.size() != n) {
          return fail("the embedding model returned the wrong number of vectors");
        }
        if (v->n_tokens < 0) tokens_known = false;
        embedding_tokens += std::max<int64_t>(v->n_tokens, 0);
        for (auto& e : v->vectors) vectors.push_back(std::move(e));
      }
    }
    if (!tokens_known) embedding_tokens = 0;

    auto cipher = Cipher(tenant);
    if (!cipher) return fail(cipher.error().message);
    const bool seal = *cipher != nullptr;
    std::vector<int64_t> ids;
    Status written = db.Transact([&](store::Executor& ex) -> Status {
      YZ_ASSIGN_OR_RETURN(auto still, ex.QueryOne(
          "SELECT 1 FROM kb_documents WHERE id = ? AND status = 'processing'", {doc_id}));
      if (!still) return Error(Code::kCancelled, "document deleted while it was being ingested");
      // Read in the transaction: another process's Recover() may have rebuilt the index keyed.
      YZ_ASSIGN_OR_RETURN(const int64_t index_format, IndexFormatOf(ex, doc.space_id));
      YZ_ASSIGN_OR_RETURN(auto hasher, Hasher(tenant, doc.space_id, index_format));
      const std::string fts = FtsTable(doc.space_id);
      for (size_t i = 0; i < chunks->size(); ++i) {
        const Chunk& c = (*chunks)[i];
        const std::string heading = JoinSectionPath(c.section_path);
        store::Value vec = nullptr;
        if (!vectors.empty()) vec = store::Blob{Seal(*cipher, VectorBytes(vectors[i]), doc_id)};
        YZ_ASSIGN_OR_RETURN(
            auto rows,
            ex.Query("INSERT INTO kb_chunks (document_id, space_id, ordinal, sealed, heading, text, "
                     "section_path, page, char_start, char_end, n_tokens, vector) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                     {doc_id, doc.space_id, static_cast<int64_t>(i), int64_t{seal ? 1 : 0},
                      store::Blob{Seal(*cipher, heading, doc_id)},
                      store::Blob{Seal(*cipher, c.text, doc_id)},
                      store::Blob{Seal(*cipher, PathJson(c.section_path), doc_id)},
                      static_cast<int64_t>(c.page), static_cast<int64_t>(c.char_start),
                      static_cast<int64_t>(c.char_end), static_cast<int64_t>(c.n_tokens), vec}));
        const int64_t id = rows.at(0).Int(0);
        ids.push_back(id);
        YZ_RETURN_IF_ERROR(
            ex.Execute(fmt::format("INSERT INTO {} (rowid, heading, body) VALUES (?, ?, ?)", fts),
                       {id, IndexText(hasher.get(), heading), IndexText(hasher.get(), c.text)}));
      }
      YZ_RETURN_IF_ERROR(ex.Execute("UPDATE kb_spaces SET chunk_count = chunk_count + ? WHERE id = ?",
                                    {static_cast<int64_t>(chunks->size()), doc.space_id}));
      YZ_RETURN_IF_ERROR(ex.Execute(
          "UPDATE kb_documents SET status = 'ready', error = '', mime_type = ?, pages = ?, "
          "ocr_pages = ?, chunks = ?, updated_at_ms = ? WHERE id = ?",
          {extracted->mime_type, static_cast<int64_t>(extracted->page_count),
           static_cast<int64_t>(extracted->ocr_page_count), static_cast<int64_t>(chunks->size()),
           clock.NowUnixMs(), doc_id}));
      return OkStatus();
    });
    if (!written) {
      if (written.error().code == Code::kCancelled) return;
      return fail(fmt::format("cannot store the chunks: {}", written.error().message));
    }
    if (!vectors.empty()) {
      // Keep the space's graph current (built now if it was not), so no query pays for it.
      auto index = Index(tenant, db, doc.space_id);
      if (!index) {
        log::Warn("vector_index_failed", {{"tenant_id", tenant}, {"space_id", doc.space_id},
                                          {"error", index.error().message}});
      }
    }
    log::Info("document_ingested", {{"tenant_id", tenant},
                                    {"document_id", doc_id},
                                    {"mime_type", extracted->mime_type},
                                    {"chunks", static_cast<int64_t>(chunks->size())}});
    Report(tenant, db, doc_id, space.embedding_model, embedding_tokens);
  }

  // ---- lookups
  Result<Space> FindSpace(store::Executor& db, std::string_view id_or_name) {
    YZ_ASSIGN_OR_RETURN(auto row,
                        db.QueryOne(fmt::format("SELECT {} FROM kb_spaces s WHERE s.id = ? OR "
                                                "s.name = ?",
                                                kSpaceColumns),
                                    {std::string(id_or_name), std::string(id_or_name)}));
    if (!row) return NotFoundError(fmt::format("space '{}' does not exist", id_or_name));
    return SpaceFromRow(*row);
  }

  // Deletes blobs that no document of the tenant references any more.
  void CollectBlobs(const std::string& tenant, store::Database& db,
                    const std::set<std::string>& digests) {
    auto blobs = stores.Blobs(tenant);
    if (!blobs) return;
    for (const auto& d : digests) {
      auto used = db.QueryOne("SELECT 1 FROM kb_documents WHERE blob = ? LIMIT 1", {d});
      if (used && !*used) (void)(*blobs)->Remove(d);
    }
  }

  // Removes the index entries of the chunks selected by `where` (with `param`), then the chunks.
  Status DeleteChunks(const std::string& tenant, store::Executor& ex, const std::string& space_id,
                      const std::string& doc_id) {
    YZ_ASSIGN_OR_RETURN(
        auto rows,
        ex.Query("SELECT id, sealed, heading, text FROM kb_chunks WHERE document_id = ?", {doc_id}));
    const std::string fts = FtsTable(space_id);
    YZ_ASSIGN_OR_RETURN(const int64_t format, IndexFormatOf(ex, space_id));
    YZ_ASSIGN_OR_RETURN(auto hasher, Hasher(tenant, space_id, format));
    for (const auto& r : rows) {
      const bool sealed = r.Int(1) != 0;
      YZ_ASSIGN_OR_RETURN(auto heading, Unseal(tenant, sealed, Bytes(r.at(2)), doc_id));
      YZ_ASSIGN_OR_RETURN(auto text, Unseal(tenant, sealed, Bytes(r.at(3)), doc_id));
      // A contentless table deletes by the very tokens that were inserted.
      YZ_RETURN_IF_ERROR(ex.Execute(
          fmt::format("INSERT INTO {0} ({0}, rowid, heading, body) VALUES ('delete', ?, ?, ?)",
                      fts),
          {r.Int(0), IndexText(hasher.get(), heading), IndexText(hasher.get(), text)}));
    }
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM kb_chunks WHERE document_id = ?", {doc_id}));
    YZ_RETURN_IF_ERROR(ex.Execute("UPDATE kb_spaces SET chunk_count = chunk_count - ? WHERE id = ?",
                                  {static_cast<int64_t>(rows.size()), space_id}));
    return OkStatus();
  }

  std::shared_ptr<VectorIndex> LoadedIndex(const std::string& tenant, const std::string& space) {
    std::lock_guard lock(vectors_mutex);
    auto it = vectors.find({tenant, space});
    return it == vectors.end() ? nullptr : it->second;
  }

  // The space's vector index, built from the stored vectors on first use and caught up with
  // chunks another process (`yunzhi kb add`) wrote since.
  Result<std::shared_ptr<VectorIndex>> Index(const std::string& tenant, store::Database& db,
                                             const std::string& space) {
    std::lock_guard build_lock(index_build_mutex);  // one loader at a time
    std::shared_ptr<VectorIndex> index = LoadedIndex(tenant, space);
    if (index) {
      YZ_ASSIGN_OR_RETURN(auto newest, db.QueryOne("SELECT max(id) FROM kb_chunks WHERE space_id = ?",
                                                   {space}));
      if (!newest || newest->IsNull(0) || newest->Int(0) <= index->max_id()) return index;
    } else {
      index = std::make_shared<VectorIndex>();
    }
    YZ_ASSIGN_OR_RETURN(auto rows, db.Query("SELECT id, sealed, vector, document_id FROM kb_chunks "
                                            "WHERE space_id = ? AND vector IS NOT NULL AND id > ?",
                                            {space, index->max_id()}));
    for (const auto& r : rows) {
      YZ_ASSIGN_OR_RETURN(auto bytes, Unseal(tenant, r.Int(1) != 0, Bytes(r.at(2)), r.Text(3)));
      YZ_RETURN_IF_ERROR(index->Add(r.Int(0), VectorFromBytes(bytes)));
    }
    std::lock_guard lock(vectors_mutex);
    auto [it, inserted] = vectors.emplace(std::make_pair(tenant, space), index);
    return it->second;
  }

  // ---- upgrade of data written before index terms were keyed (Recover)

  // Rebuilds a plain-term full-text index with keyed tokens, from the space's sealed chunks, in
  // one transaction: the space is searchable the whole time, by one index or the other.
  Status RebuildIndexKeyed(const std::string& tenant, store::Database& db,
                           const std::string& space_id) {
    YZ_ASSIGN_OR_RETURN(auto hasher, Hasher(tenant, space_id, kKeyedTerms));
    return db.Transact([&](store::Executor& ex) -> Status {
      YZ_ASSIGN_OR_RETURN(const int64_t format, IndexFormatOf(ex, space_id));
      if (format == kKeyedTerms) return OkStatus();  // done meanwhile
      YZ_RETURN_IF_ERROR(
          ex.Execute(fmt::format("DROP TABLE IF EXISTS \"fts_{}_vocab\"", space_id)));
      YZ_RETURN_IF_ERROR(ex.Execute(fmt::format("DROP TABLE IF EXISTS {}", FtsTable(space_id))));
      YZ_RETURN_IF_ERROR(CreateFtsTables(ex, space_id, kKeyedTerms));
      const std::string insert =
          fmt::format("INSERT INTO {} (rowid, heading, body) VALUES (?, ?, ?)", FtsTable(space_id));
      // In pages of chunks, so that a large space is never held in memory whole.
      int64_t last = 0;
      for (;;) {
        YZ_ASSIGN_OR_RETURN(auto rows,
                            ex.Query("SELECT id, sealed, heading, text, document_id FROM kb_chunks "
                                     "WHERE space_id = ? AND id > ? ORDER BY id LIMIT 256",
                                     {space_id, last}));
        if (rows.empty()) break;
        for (const auto& r : rows) {
          const bool sealed = r.Int(1) != 0;
          const std::string doc_id = r.Text(4);
          YZ_ASSIGN_OR_RETURN(auto heading, Unseal(tenant, sealed, Bytes(r.at(2)), doc_id));
          YZ_ASSIGN_OR_RETURN(auto text, Unseal(tenant, sealed, Bytes(r.at(3)), doc_id));
          YZ_RETURN_IF_ERROR(ex.Execute(
              insert, {r.Int(0), IndexText(hasher.get(), heading), IndexText(hasher.get(), text)}));
          last = r.Int(0);
        }
      }
      YZ_RETURN_IF_ERROR(ex.Execute("UPDATE kb_spaces SET index_format = ? WHERE id = ?",
                                    {int64_t{kKeyedTerms}, space_id}));
      return OkStatus();
    });
  }

  // Seals the document names and job file lists stored in clear.
  Status SealNames(const std::string& tenant, store::Database& db,
                   const std::shared_ptr<const crypto::DataCipher>& cipher) {
    return db.Transact([&](store::Executor& ex) -> Status {
      YZ_ASSIGN_OR_RETURN(auto docs,
                          ex.Query("SELECT id, name FROM kb_documents WHERE name_sealed = 0"));
      for (const auto& r : docs) {
        YZ_RETURN_IF_ERROR(
            ex.Execute("UPDATE kb_documents SET name = ?, name_sealed = 1 WHERE id = ?",
                       {store::Blob{cipher->Seal(r.Text(1), NameAd(r.Text(0)))}, r.Text(0)}));
      }
      YZ_ASSIGN_OR_RETURN(auto jobs,
                          ex.Query("SELECT id, files FROM kb_jobs WHERE files_sealed = 0"));
      for (const auto& r : jobs) {
        YZ_RETURN_IF_ERROR(
            ex.Execute("UPDATE kb_jobs SET files = ?, files_sealed = 1 WHERE id = ?",
                       {store::Blob{cipher->Seal(r.Text(1), JobFilesAd(r.Text(0)))}, r.Text(0)}));
      }
      return OkStatus();
    });
  }

  // Recover's upgrade of one tenant (knowledge_base.h). Returns whether anything changed.
  Result<bool> UpgradeTenant(const std::string& tenant, store::Database& db) {
    YZ_ASSIGN_OR_RETURN(auto cipher, Cipher(tenant));
    if (!cipher) return false;  // nothing to seal with: plain terms stay
    YZ_ASSIGN_OR_RETURN(auto spaces,
                        db.Query("SELECT id FROM kb_spaces WHERE index_format != ? ORDER BY id",
                                 {int64_t{kKeyedTerms}}));
    YZ_ASSIGN_OR_RETURN(
        auto plain,
        db.QueryOne("SELECT (SELECT count(*) FROM kb_documents WHERE name_sealed = 0) + "
                    "(SELECT count(*) FROM kb_jobs WHERE files_sealed = 0)"));
    const int64_t n_plain = plain ? plain->Int(0) : 0;
    if (spaces.empty() && n_plain == 0) return false;
    for (const auto& r : spaces) YZ_RETURN_IF_ERROR(RebuildIndexKeyed(tenant, db, r.Text(0)));
    if (n_plain > 0) YZ_RETURN_IF_ERROR(SealNames(tenant, db, cipher));
    // The old index pages and rows are now free pages of the file and old frames of the WAL,
    // still holding their plaintext: rewrite the file and empty the WAL.
    YZ_RETURN_IF_ERROR(db.Execute("VACUUM"));
    YZ_ASSIGN_OR_RETURN(auto checkpoint, db.QueryOne("PRAGMA wal_checkpoint(TRUNCATE)"));
    if (checkpoint && checkpoint->Int(0) != 0) {
      log::Warn(
          "knowledge_wal_not_truncated",
          {{"tenant_id", tenant},
           {"detail", "a reader kept the WAL busy; its old frames go at the next checkpoint"}});
    }
    log::Info("knowledge_upgraded", {{"tenant_id", tenant},
                                     {"spaces_reindexed", static_cast<int64_t>(spaces.size())},
                                     {"names_sealed", n_plain}});
    return true;
  }
};

KnowledgeBase::KnowledgeBase(store::TenantStores& stores, KnowledgeOptions options,
                             const Clock& clock)
    : state_(std::make_unique<State>(stores, std::move(options), clock)) {
  const int n = std::max(1, state_->options.ingest_threads);
  for (int i = 0; i < n; ++i) state_->workers.emplace_back([s = state_.get()] { s->WorkerLoop(); });
}

KnowledgeBase::~KnowledgeBase() {
  {
    std::lock_guard lock(state_->queue_mutex);
    state_->stopping = true;
  }
  state_->queue_cv.notify_all();
  for (auto& t : state_->workers) t.join();
  if (state_->warmer.joinable()) state_->warmer.join();
}

Status KnowledgeBase::Recover() {
  for (const std::string& tenant : state_->stores.ExistingTenants()) {
    YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant));
    if (auto upgraded = state_->UpgradeTenant(tenant, *db); !upgraded) {
      log::Error("knowledge_upgrade_failed",
                 {{"tenant_id", tenant}, {"error", upgraded.error().message}});
    }
    YZ_ASSIGN_OR_RETURN(auto rows, db->Query("SELECT id FROM kb_documents WHERE status IN "
                                             "('queued', 'processing') ORDER BY id"));
    if (!rows.empty()) {
      log::Info("ingest_resumed", {{"tenant_id", tenant},
                                   {"documents", static_cast<int64_t>(rows.size())}});
    }
    for (const auto& r : rows) state_->Enqueue(tenant, r.Text(0));
  }
  // Build the vector indexes of spaces with embeddings in the background: the first hybrid
  // query of a large space would otherwise wait for its graph.
  if (!state_->warmer.joinable()) {
    state_->warmer = std::thread([s = state_.get()] {
      for (const std::string& tenant : s->stores.ExistingTenants()) {
        auto db = s->stores.DatabaseOf(tenant);
        if (!db) continue;
        auto spaces = (*db)->Query("SELECT id FROM kb_spaces WHERE embedding_model != ''");
        if (!spaces) continue;
        for (const auto& r : *spaces) {
          {
            std::lock_guard lock(s->queue_mutex);
            if (s->stopping) return;
          }
          (void)s->Index(tenant, **db, r.Text(0));
        }
      }
    });
  }
  return OkStatus();
}

void KnowledgeBase::WaitIdle() {
  std::unique_lock lock(state_->queue_mutex);
  state_->idle_cv.wait(lock, [&] { return state_->queue.empty() && state_->busy == 0; });
}

// ---- spaces

Result<Space> KnowledgeBase::CreateSpace(std::string_view tenant_id, const SpaceSpec& spec) {
  YZ_RETURN_IF_ERROR(ValidateSpaceName(spec.name));
  if (spec.chunking.max_tokens < 16 || spec.chunking.max_tokens > 8192) {
    return InvalidArgumentError("chunk size must be between 16 and 8192 tokens", "chunk_size");
  }
  if (spec.chunking.overlap_tokens < 0 ||
      spec.chunking.overlap_tokens >= spec.chunking.max_tokens) {
    return InvalidArgumentError("chunk overlap must be at least 0 and less than the chunk size",
                                "chunk_overlap");
  }
  if (spec.description.size() > 4096) {
    return InvalidArgumentError("description is longer than 4096 bytes", "description");
  }
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  // With a tenant key the index holds keyed tokens, never words.
  YZ_ASSIGN_OR_RETURN(auto cipher, state_->Cipher(tenant_id));
  const int64_t format = cipher ? kKeyedTerms : kPlainTerms;
  const std::string id = NewId("ks", state_->clock);
  Status s = db->Transact([&](store::Executor& ex) -> Status {
    YZ_RETURN_IF_ERROR(ex.Execute(
        "INSERT INTO kb_spaces (id, name, description, embedding_model, chunk_max_tokens, "
        "chunk_overlap_tokens, shared, created_at_ms, index_format) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {id, spec.name, spec.description, spec.embedding_model,
         static_cast<int64_t>(spec.chunking.max_tokens),
         static_cast<int64_t>(spec.chunking.overlap_tokens), int64_t{spec.shared ? 1 : 0},
         state_->clock.NowUnixMs(), format}));
    return CreateFtsTables(ex, id, format);
  });
  if (!s) {
    if (s.error().code == Code::kAlreadyExists) {
      return Error(Code::kAlreadyExists, fmt::format("space '{}' already exists", spec.name), "name");
    }
    return s.error();
  }
  return GetSpace(tenant_id, id);
}

Result<std::vector<Space>> KnowledgeBase::ListSpaces(std::string_view tenant_id) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto rows, db->Query(fmt::format(
                                     "SELECT {} FROM kb_spaces s ORDER BY s.id", kSpaceColumns)));
  std::vector<Space> out;
  for (const auto& r : rows) out.push_back(SpaceFromRow(r));
  return out;
}

Result<Space> KnowledgeBase::GetSpace(std::string_view tenant_id, std::string_view id_or_name) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  return state_->FindSpace(*db, id_or_name);
}

Status KnowledgeBase::DeleteSpace(std::string_view tenant_id, std::string_view id_or_name) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(Space space, state_->FindSpace(*db, id_or_name));
  std::set<std::string> blobs;
  YZ_RETURN_IF_ERROR(db->Transact([&](store::Executor& ex) -> Status {
    YZ_ASSIGN_OR_RETURN(auto rows,
                        ex.Query("SELECT blob FROM kb_documents WHERE space_id = ?", {space.id}));
    for (const auto& r : rows) blobs.insert(r.Text(0));
    YZ_RETURN_IF_ERROR(
        ex.Execute(fmt::format("DROP TABLE IF EXISTS \"fts_{}_vocab\"", space.id)));
    YZ_RETURN_IF_ERROR(ex.Execute(fmt::format("DROP TABLE IF EXISTS {}", FtsTable(space.id))));
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM kb_chunks WHERE space_id = ?", {space.id}));
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM kb_spaces WHERE id = ?", {space.id}));
    return OkStatus();
  }));
  {
    std::lock_guard lock(state_->vectors_mutex);
    state_->vectors.erase({std::string(tenant_id), space.id});
  }
  state_->CollectBlobs(std::string(tenant_id), *db, blobs);
  return OkStatus();
}

// ---- documents

Result<Job> KnowledgeBase::AddDocuments(std::string_view tenant_id, std::string_view space_name,
                                        std::vector<Upload> files) {
  if (files.empty()) return InvalidArgumentError("no files to add", "files");
  const std::string tenant(tenant_id);
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant));
  YZ_ASSIGN_OR_RETURN(Space space, state_->FindSpace(*db, space_name));
  YZ_ASSIGN_OR_RETURN(auto blobs, state_->stores.Blobs(tenant));
  YZ_ASSIGN_OR_RETURN(auto cipher, state_->Cipher(tenant));

  const int64_t now = state_->clock.NowUnixMs();
  const std::string job_id = NewId("job", state_->clock);
  struct NewDoc {
    std::string id, name, sha, blob;
    int64_t size;
  };
  std::vector<NewDoc> new_docs;
  std::vector<JobFile> job_files;
  std::map<std::string, std::string> batch_sha;  // sha -> document id, within this batch
  for (Upload& f : files) {
    JobFile jf;
    jf.name = f.name.empty() ? "upload" : f.name;
    if (f.bytes.empty()) {
      jf.status = "failed";
      jf.error = "the file is empty";
      job_files.push_back(std::move(jf));
      continue;
    }
    if (static_cast<int64_t>(f.bytes.size()) > state_->options.max_document_bytes) {
      jf.status = "failed";
      jf.error = fmt::format("the file is larger than the limit of {} bytes",
                             state_->options.max_document_bytes);
      job_files.push_back(std::move(jf));
      continue;
    }
    const std::string sha = crypto::Sha256Hex(f.bytes);
    if (auto it = batch_sha.find(sha); it != batch_sha.end()) {
      jf.document_id = it->second;
      jf.duplicate = true;
      job_files.push_back(std::move(jf));
      continue;
    }
    YZ_ASSIGN_OR_RETURN(auto existing,
                        db->QueryOne("SELECT id FROM kb_documents WHERE space_id = ? AND sha256 = ?",
                                     {space.id, sha}));
    if (existing) {
      jf.document_id = existing->Text(0);
      jf.duplicate = true;
      job_files.push_back(std::move(jf));
      continue;
    }
    // The same content elsewhere in the tenant (another space): share its stored blob.
    YZ_ASSIGN_OR_RETURN(auto same, db->QueryOne("SELECT blob, sealed FROM kb_documents WHERE "
                                                "sha256 = ? LIMIT 1",
                                                {sha}));
    std::string blob;
    if (same && (same->Int(1) != 0) == (cipher != nullptr)) {
      blob = same->Text(0);
    } else {
      YZ_ASSIGN_OR_RETURN(auto info, blobs->Put(State::Seal(cipher, f.bytes, tenant + ":" + sha)));
      blob = info.digest;
    }
    NewDoc d{NewId("doc", state_->clock), jf.name, sha, blob, static_cast<int64_t>(f.bytes.size())};
    jf.document_id = d.id;
    batch_sha[sha] = d.id;
    std::string().swap(f.bytes);
    new_docs.push_back(std::move(d));
    job_files.push_back(std::move(jf));
  }

  json::array files_json;
  for (const JobFile& jf : job_files) {
    files_json.push_back(json::object{{"name", jf.name},
                                      {"document_id", jf.document_id},
                                      {"duplicate", jf.duplicate},
                                      {"error", jf.error}});
  }
  // File names are tenant data too: sealed with the key, each bound to its row.
  const int64_t sealed = cipher ? 1 : 0;
  auto sealed_text = [&](std::string_view text, const std::string& ad) -> store::Value {
    if (!cipher) return std::string(text);
    return store::Blob{cipher->Seal(text, ad)};
  };
  YZ_RETURN_IF_ERROR(db->Transact([&](store::Executor& ex) -> Status {
    YZ_RETURN_IF_ERROR(
        ex.Execute("INSERT INTO kb_jobs (id, space_id, files, created_at_ms, files_sealed) VALUES "
                   "(?, ?, ?, ?, ?)",
                   {job_id, space.id, sealed_text(json::serialize(files_json), JobFilesAd(job_id)),
                    now, sealed}));
    for (const NewDoc& d : new_docs) {
      YZ_RETURN_IF_ERROR(
          ex.Execute("INSERT INTO kb_documents (id, space_id, job_id, name, sha256, blob, sealed, "
                     "size_bytes, status, created_at_ms, updated_at_ms, name_sealed) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                     {d.id, space.id, job_id, sealed_text(d.name, NameAd(d.id)), d.sha, d.blob,
                      sealed, d.size, now, now, sealed}));
    }
    return OkStatus();
  }));
  for (const NewDoc& d : new_docs) state_->Enqueue(tenant, d.id);
  return GetJob(tenant_id, job_id);
}

Result<Job> KnowledgeBase::GetJob(std::string_view tenant_id, std::string_view job_id) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto row,
                      db->QueryOne("SELECT id, space_id, files, created_at_ms, files_sealed FROM "
                                   "kb_jobs WHERE id = ?",
                                   {std::string(job_id)}));
  if (!row) return NotFoundError(fmt::format("job '{}' does not exist", job_id));
  YZ_ASSIGN_OR_RETURN(const std::string files_text,
                      state_->Unseal(std::string(tenant_id), row->Int(4) != 0, row->Text(2),
                                     JobFilesAd(row->Text(0))));
  Job job;
  job.id = row->Text(0);
  job.space_id = row->Text(1);
  job.created_at_ms = row->Int(3);
  std::map<std::string, std::pair<std::string, std::string>> docs;  // id -> (status, error)
  YZ_ASSIGN_OR_RETURN(auto doc_rows,
                      db->Query("SELECT id, status, error FROM kb_documents WHERE job_id = ?",
                                {job.id}));
  for (const auto& r : doc_rows) docs[r.Text(0)] = {r.Text(1), r.Text(2)};
  boost::system::error_code ec;
  json::value files = json::parse(files_text, ec);
  int64_t running = 0;
  if (!ec && files.is_array()) {
    for (const auto& v : files.as_array()) {
      if (!v.is_object()) continue;
      const auto& o = v.as_object();
      JobFile f;
      f.name = std::string(o.at("name").as_string());
      f.document_id = std::string(o.at("document_id").as_string());
      f.duplicate = o.at("duplicate").as_bool();
      f.error = std::string(o.at("error").as_string());
      if (!f.error.empty()) {
        f.status = "failed";
      } else if (f.duplicate) {
        f.status = "ready";
        if (f.document_id.empty() == false) {
          auto d = db->QueryOne("SELECT status, error FROM kb_documents WHERE id = ?",
                                {f.document_id});
          if (d && *d) {
            f.status = (*d)->Text(0);
            f.error = (*d)->Text(1);
          }
        }
      } else if (auto it = docs.find(f.document_id); it != docs.end()) {
        f.status = it->second.first;
        f.error = it->second.second;
      } else {
        f.status = "failed";
        f.error = "the document was deleted";
      }
      ++job.total;
      if (f.status == "ready") ++job.done;
      if (f.status == "failed") {
        ++job.done;
        ++job.failed;
      }
      if (f.status == "processing") ++running;
      job.files.push_back(std::move(f));
    }
  }
  if (job.done == job.total) {
    job.status = job.failed == 0 ? "succeeded" : job.failed == job.total ? "failed" : "partial";
  } else {
    job.status = (job.done > 0 || running > 0) ? "running" : "queued";
  }
  return job;
}

Result<std::vector<Document>> KnowledgeBase::ListDocuments(std::string_view tenant_id,
                                                           std::string_view space_name) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(Space space, state_->FindSpace(*db, space_name));
  YZ_ASSIGN_OR_RETURN(auto rows, db->Query(fmt::format("SELECT {} FROM kb_documents WHERE "
                                                       "space_id = ? ORDER BY id",
                                                       kDocumentColumns),
                                           {space.id}));
  std::vector<Document> out;
  for (const auto& r : rows) {
    YZ_ASSIGN_OR_RETURN(Document d, state_->DocumentOf(tenant_id, r));
    out.push_back(std::move(d));
  }
  return out;
}

Result<Document> KnowledgeBase::GetDocument(std::string_view tenant_id,
                                            std::string_view document_id) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto row, db->QueryOne(fmt::format("SELECT {} FROM kb_documents WHERE id = ?",
                                                         kDocumentColumns),
                                             {std::string(document_id)}));
  if (!row) return NotFoundError(fmt::format("document '{}' does not exist", document_id));
  return state_->DocumentOf(tenant_id, *row);
}

Result<std::string> KnowledgeBase::DocumentBytes(std::string_view tenant_id,
                                                 std::string_view document_id) {
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto row, db->QueryOne("SELECT blob, sealed, sha256 FROM kb_documents "
                                             "WHERE id = ?",
                                             {std::string(document_id)}));
  if (!row) return NotFoundError(fmt::format("document '{}' does not exist", document_id));
  YZ_ASSIGN_OR_RETURN(auto blobs, state_->stores.Blobs(tenant_id));
  YZ_ASSIGN_OR_RETURN(auto bytes, blobs->Get(row->Text(0)));
  return state_->Unseal(std::string(tenant_id), row->Int(1) != 0, std::move(bytes),
                        std::string(tenant_id) + ":" + row->Text(2));
}

Status KnowledgeBase::DeleteDocument(std::string_view tenant_id, std::string_view document_id) {
  const std::string tenant(tenant_id);
  YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(tenant));
  YZ_ASSIGN_OR_RETURN(Document doc, GetDocument(tenant_id, document_id));
  std::string blob;
  std::vector<int64_t> chunk_ids;
  YZ_RETURN_IF_ERROR(db->Transact([&](store::Executor& ex) -> Status {
    YZ_ASSIGN_OR_RETURN(auto row, ex.QueryOne("SELECT blob FROM kb_documents WHERE id = ?", {doc.id}));
    if (!row) return NotFoundError(fmt::format("document '{}' does not exist", document_id));
    blob = row->Text(0);
    YZ_ASSIGN_OR_RETURN(auto ids, ex.Query("SELECT id FROM kb_chunks WHERE document_id = ?", {doc.id}));
    for (const auto& r : ids) chunk_ids.push_back(r.Int(0));
    YZ_RETURN_IF_ERROR(state_->DeleteChunks(tenant, ex, doc.space_id, doc.id));
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM kb_documents WHERE id = ?", {doc.id}));
    return OkStatus();
  }));
  if (auto index = state_->LoadedIndex(tenant, doc.space_id)) {
    for (int64_t id : chunk_ids) index->Remove(id);
  }
  state_->CollectBlobs(tenant, *db, {blob});
  return OkStatus();
}

// ---- search

namespace {

// FTS5 scores every row that matches any query term, so a lexical query costs about the sum of
// its terms' document frequencies. Terms are kept rarest first while that sum stays within this
// budget (the rarest term always stays): queries on small spaces keep every term, while on a
// space of 100,000 chunks the very common terms ("the", "的") — which add little to BM25 —
// are dropped instead of making FTS5 score most of the index. Measured: Cranfield nDCG@10
// 0.3716 with this budget against 0.3717 without; CMRC2018 unchanged (docs/benchmarks.md).
constexpr int64_t kMatchRowBudget = 6000;

// The MATCH expression for `query` on one space, terms joined by OR: for a plain-term index the
// surface forms of its terms, each quoted (FTS5 re-tokenizes them with the table's tokenizer, so
// stemming matches the index); for a keyed index the terms' tokens (`hasher`), as indexed. Terms
// absent from the space are left out, and common ones beyond the row budget. Empty when nothing
// can match.
struct LexicalQuery {
  std::string match;  // empty: nothing can match
  // Even the rarest term is beyond the budget (a query of only very common words): score just
  // the first matching rows instead of all of them, to bound the latency.
  bool over_budget = false;
};

Result<LexicalQuery> PrunedMatch(store::Database& db, const Space& space,
                                 const crypto::TermHasher* hasher, std::string_view query,
                                 const std::vector<Term>& terms) {
  struct Found {
    int64_t n_docs;
    const Term* term;
    std::string indexed;  // the term as the index holds it: itself, or its token
  };
  std::vector<Found> df;
  std::set<std::string> seen;
  const std::string sql = fmt::format("SELECT doc FROM \"fts_{}_vocab\" WHERE term = ?", space.id);
  for (const Term& t : terms) {
    std::string indexed = hasher != nullptr ? hasher->Token(t.text) : t.text;
    if (!seen.insert(indexed).second) continue;
    YZ_ASSIGN_OR_RETURN(auto row, db.QueryOne(sql, {indexed}));
    const int64_t n = row ? row->Int(0) : 0;
    if (n > 0) df.push_back({n, &t, std::move(indexed)});
  }
  std::stable_sort(df.begin(), df.end(),
                   [](const Found& a, const Found& b) { return a.n_docs < b.n_docs; });
  std::string out;
  int64_t rows = 0;
  const bool over_budget = !df.empty() && df.front().n_docs > kMatchRowBudget;
  for (const Found& f : df) {
    if (!out.empty() && rows + f.n_docs > kMatchRowBudget) break;
    rows += f.n_docs;
    // A token is [a-z2-7] only; a surface form may hold anything and is quoted.
    std::string quoted = "\"";
    for (char c : hasher != nullptr ? std::string_view(f.indexed)
                                    : query.substr(f.term->start, f.term->end - f.term->start)) {
      quoted += c;
      if (c == '"') quoted += '"';
    }
    quoted += '"';
    out += out.empty() ? quoted : " OR " + quoted;
  }
  return LexicalQuery{std::move(out), over_budget};
}

struct Candidate {
  std::string tenant;
  int64_t chunk_id = 0;
  std::optional<double> lexical, vector;
  int lexical_rank = 0, vector_rank = 0;
  double fused = 0;
};

}  // namespace

Result<std::vector<SearchHit>> KnowledgeBase::Search(std::span<const SpaceRef> spaces,
                                                     std::string_view query,
                                                     const RetrievalSettings& settings) {
  if (query.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return InvalidArgumentError("the query is empty", "query");
  }
  if (settings.top_k < 1 || settings.top_k > 100) {
    return InvalidArgumentError("top_k must be between 1 and 100", "top_k");
  }
  if (settings.lexical_weight < 0 || settings.vector_weight < 0) {
    return InvalidArgumentError("fusion weights must not be negative", "weights");
  }
  const int n_candidates = std::max(settings.candidates, settings.top_k);

  struct Target {
    std::shared_ptr<store::Database> db;
    Space space;  // id, name, embedding model and chunk count only
    std::string tenant;
    int64_t index_format = kPlainTerms;
  };
  std::vector<Target> targets;
  bool any_vectors = false;
  for (const SpaceRef& ref : spaces) {
    YZ_ASSIGN_OR_RETURN(auto db, state_->stores.DatabaseOf(ref.tenant_id));
    YZ_ASSIGN_OR_RETURN(auto row, db->QueryOne("SELECT id, name, embedding_model, chunk_count, "
                                               "index_format FROM kb_spaces WHERE id = ? OR "
                                               "name = ?",
                                               {ref.space_id, ref.space_id}));
    if (!row) return NotFoundError(fmt::format("space '{}' does not exist", ref.space_id));
    Space space;
    space.id = row->Text(0);
    space.name = row->Text(1);
    space.embedding_model = row->Text(2);
    space.chunks = row->Int(3);
    any_vectors = any_vectors || !space.embedding_model.empty();
    targets.push_back({db, std::move(space), ref.tenant_id, row->Int(4)});
  }
  RetrievalMode mode = settings.mode;
  if (mode == RetrievalMode::kAuto) {
    mode = any_vectors && state_->options.embedder ? RetrievalMode::kHybrid : RetrievalMode::kLexical;
  }
  const bool use_lexical = mode == RetrievalMode::kLexical || mode == RetrievalMode::kHybrid;
  const bool use_vectors = mode == RetrievalMode::kVector || mode == RetrievalMode::kHybrid;
  if (use_vectors && !state_->options.embedder) {
    return InvalidArgumentError("vector search needs an embedding model, and none is configured",
                                "mode");
  }

  std::map<std::pair<std::string, int64_t>, Candidate> candidates;
  auto candidate = [&](const std::string& tenant, int64_t id) -> Candidate& {
    Candidate& c = candidates[{tenant, id}];
    c.tenant = tenant;
    c.chunk_id = id;
    return c;
  };

  if (use_lexical) {
    const std::vector<Term> terms = Analyze(query);
    std::vector<std::tuple<double, std::string, int64_t>> lexical;
    for (const Target& t : targets) {
      YZ_ASSIGN_OR_RETURN(auto hasher, state_->Hasher(t.tenant, t.space.id, t.index_format));
      YZ_ASSIGN_OR_RETURN(const LexicalQuery lq,
                          PrunedMatch(*t.db, t.space, hasher.get(), query, terms));
      if (lq.match.empty()) continue;
      {
        // Over budget: the newest kMatchRowBudget matches are scored, not all of them.
        YZ_ASSIGN_OR_RETURN(
            auto rows,
            t.db->Query(lq.over_budget
                            ? fmt::format("SELECT rowid, rank FROM (SELECT rowid, rank FROM {0} "
                                          "WHERE {0} MATCH ? ORDER BY rowid DESC LIMIT {1}) "
                                          "ORDER BY rank LIMIT ?",
                                          FtsTable(t.space.id), kMatchRowBudget)
                            : fmt::format("SELECT rowid, rank FROM {0} WHERE {0} MATCH ? "
                                          "ORDER BY rank LIMIT ?",
                                          FtsTable(t.space.id)),
                        {lq.match, static_cast<int64_t>(n_candidates)}));
        for (const auto& r : rows) lexical.emplace_back(-r.Real(1), t.tenant, r.Int(0));
      }
    }
    std::sort(lexical.begin(), lexical.end(),
              [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
    if (lexical.size() > static_cast<size_t>(n_candidates)) lexical.resize(n_candidates);
    for (size_t i = 0; i < lexical.size(); ++i) {
      Candidate& c = candidate(std::get<1>(lexical[i]), std::get<2>(lexical[i]));
      c.lexical = std::get<0>(lexical[i]);
      c.lexical_rank = static_cast<int>(i) + 1;
    }
  }

  if (use_vectors) {
    std::map<std::string, std::vector<float>> query_vectors;  // per embedding model
    std::vector<std::tuple<double, std::string, int64_t>> dense;
    for (const Target& t : targets) {
      if (t.space.embedding_model.empty()) {
        if (mode == RetrievalMode::kVector) {
          return InvalidArgumentError(
              fmt::format("space '{}' has no embedding model: use lexical search", t.space.name),
              "mode");
        }
        continue;
      }
      auto it = query_vectors.find(t.space.embedding_model);
      if (it == query_vectors.end()) {
        std::string q(query);
        YZ_ASSIGN_OR_RETURN(auto v, state_->options.embedder(t.space.embedding_model,
                                                             std::span<const std::string>(&q, 1)));
        if (v.vectors.size() != 1) return InternalError("the embedding model returned no vector");
        it = query_vectors.emplace(t.space.embedding_model, std::move(v.vectors[0])).first;
      }
      YZ_ASSIGN_OR_RETURN(auto index, state_->Index(t.tenant, *t.db, t.space.id));
      YZ_ASSIGN_OR_RETURN(auto found, index->Search(it->second, n_candidates));
      for (const auto& [id, sim] : found) dense.emplace_back(sim, t.tenant, id);
    }
    std::sort(dense.begin(), dense.end(),
              [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
    if (dense.size() > static_cast<size_t>(n_candidates)) dense.resize(n_candidates);
    for (size_t i = 0; i < dense.size(); ++i) {
      Candidate& c = candidate(std::get<1>(dense[i]), std::get<2>(dense[i]));
      c.vector = std::get<0>(dense[i]);
      c.vector_rank = static_cast<int>(i) + 1;
    }
  }

  // Fusion: weighted reciprocal ranks when both retrievers ran, else the one score.
  std::vector<Candidate> ranked;
  for (auto& [key, c] : candidates) {
    if (use_lexical && use_vectors) {
      constexpr double kRrf = 60;
      if (c.lexical_rank > 0) c.fused += settings.lexical_weight / (kRrf + c.lexical_rank);
      if (c.vector_rank > 0) c.fused += settings.vector_weight / (kRrf + c.vector_rank);
    } else {
      c.fused = use_lexical ? c.lexical.value_or(0) : c.vector.value_or(0);
    }
    ranked.push_back(c);
  }
  std::sort(ranked.begin(), ranked.end(), [](const Candidate& a, const Candidate& b) {
    return a.fused != b.fused ? a.fused > b.fused : a.chunk_id < b.chunk_id;
  });
  const bool rerank = !settings.rerank_model.empty();
  if (rerank && !state_->options.reranker) {
    return InvalidArgumentError("reranking needs a reranker model service, and none is configured",
                                "rerank_model");
  }
  const size_t keep = rerank ? std::min<size_t>(ranked.size(), n_candidates)
                             : std::min<size_t>(ranked.size(), settings.top_k);
  ranked.resize(keep);

  // Load the chunks.
  std::map<std::string, std::shared_ptr<store::Database>> dbs;
  std::map<std::pair<std::string, std::string>, std::string> space_of;
  for (const Target& t : targets) dbs[t.tenant] = t.db;
  // One query per tenant for all its chunks.
  std::map<std::pair<std::string, int64_t>, store::Row> rows_by_chunk;
  for (const auto& [tenant, db] : dbs) {
    std::string in;
    std::vector<store::Value> ids;
    for (const Candidate& c : ranked) {
      if (c.tenant != tenant) continue;
      in += in.empty() ? "?" : ", ?";
      ids.emplace_back(c.chunk_id);
    }
    if (ids.empty()) continue;
    YZ_ASSIGN_OR_RETURN(
        auto rows, db->Query(fmt::format("SELECT c.id, c.document_id, d.name, c.sealed, c.text, "
                                         "c.section_path, c.page, c.char_start, c.char_end, "
                                         "c.space_id, d.name_sealed FROM kb_chunks c JOIN "
                                         "kb_documents d ON d.id = c.document_id WHERE c.id IN "
                                         "({})",
                                         in),
                             std::move(ids)));
    for (auto& r : rows) rows_by_chunk.emplace(std::make_pair(tenant, r.Int(0)), std::move(r));
  }
  std::vector<SearchHit> hits;
  for (const Candidate& c : ranked) {
    auto found = rows_by_chunk.find({c.tenant, c.chunk_id});
    if (found == rows_by_chunk.end()) continue;  // deleted meanwhile
    const store::Row* row = &found->second;
    SearchHit h;
    h.chunk_id = c.chunk_id;
    h.tenant_id = c.tenant;
    h.document_id = row->Text(1);
    YZ_ASSIGN_OR_RETURN(h.document_name, state_->Unseal(c.tenant, row->Int(10) != 0, row->Text(2),
                                                        NameAd(h.document_id)));
    const bool sealed = row->Int(3) != 0;
    YZ_ASSIGN_OR_RETURN(h.text, state_->Unseal(c.tenant, sealed, Bytes(row->at(4)), h.document_id));
    YZ_ASSIGN_OR_RETURN(auto path,
                        state_->Unseal(c.tenant, sealed, Bytes(row->at(5)), h.document_id));
    h.section_path = PathFromJson(path);
    h.page = static_cast<int>(row->Int(6));
    h.char_start = row->Int(7);
    h.char_end = row->Int(8);
    h.space_id = row->Text(9);
    h.lexical_score = c.lexical;
    h.vector_score = c.vector;
    h.score = c.fused;
    hits.push_back(std::move(h));
  }
  if (rerank && !hits.empty()) {
    std::vector<std::string> texts;
    for (const auto& h : hits) texts.push_back(h.text);
    YZ_ASSIGN_OR_RETURN(auto scores, state_->options.reranker(settings.rerank_model, query, texts));
    if (scores.size() != hits.size()) return InternalError("the reranker returned the wrong count");
    for (size_t i = 0; i < hits.size(); ++i) {
      hits[i].rerank_score = scores[i];
      hits[i].score = scores[i];
    }
    std::stable_sort(hits.begin(), hits.end(),
                     [](const SearchHit& a, const SearchHit& b) { return a.score > b.score; });
  }
  std::erase_if(hits, [&](const SearchHit& h) { return h.score < settings.score_threshold; });
  if (hits.size() > static_cast<size_t>(settings.top_k)) hits.resize(settings.top_k);
  return hits;
}

}  // namespace yunzhi::knowledge
