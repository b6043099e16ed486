// Knowledge spaces: a tenant's documents, ingested in the background into searchable chunks.
//
// Data flow of one upload: AddDocuments stores each file (sealed with the tenant's data key) in
// the tenant's blob store and queues a document row, in one transaction per batch, and returns a
// job at once. Ingest workers then take queued documents one at a time: extract (ingest.h),
// chunk (chunker.h), embed when the space names an embedding model, and write the chunks, their
// full-text index entries and vectors and the document's final status in ONE transaction — a
// document is either fully searchable or not at all. A process killed mid-document leaves it
// "processing"; Recover() at the next start queues it again. One bad file fails only itself.
//
// Storage: everything of a tenant lives in that tenant's own database and blob store
// (store/tenant_stores.h), so every method below is scoped by the tenant it is given, in the
// store layer. Per space: a contentless FTS5 table (terms as text_analysis.h's Analyze gives
// them: Chinese words by ICU dictionary segmentation, English case-folded and Porter-stemmed;
// stored as keyed tokens, see below) and, when the space has an embedding model, an HNSW index
// (hnswlib, inner product on unit vectors) built in memory from the vectors stored with the
// chunks (never written to disk).
//
// At rest, when a cipher provider is configured (the server and the CLI always configure one):
// uploaded files, chunk text, headings, section paths, vectors, document names and jobs' file
// lists are sealed with the tenant's data key (XChaCha20-Poly1305), and the full-text index holds
// no words: each analysed term is replaced by a keyed 80-bit hash token (crypto::TermHasher, key
// derived from the tenant key per space) before it reaches SQLite, and queries are hashed the
// same way, so ranking is unchanged. What stays readable in the tenant's directory: space names
// and descriptions, embedding model names, document ids, sizes, MIME types, page and chunk
// counts, SHA-256 digests of the uploaded files, error messages, and the index's statistics
// (which chunks share a token, term counts per chunk). Spaces created without a cipher (tests)
// index plain terms. A space indexed with plain terms by an earlier version is rebuilt with keyed
// tokens by Recover() when its tenant has a key (document names and job lists are sealed too,
// and the database file is rewritten so that no freed page keeps the old plaintext).
//
// Retrieval: lexical BM25 (bm25() over heading and body), dense (cosine), or hybrid by weighted
// reciprocal-rank fusion (k = 60), optionally reordered by a cross-encoder (reranker). Without an
// embedding model, lexical retrieval alone works.
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/crypto.h"
#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/chunker.h"
#include "yunzhi/store/migrations.h"
#include "yunzhi/store/tenant_stores.h"

namespace yunzhi::knowledge {

struct SpaceSpec {
  std::string name;         // unique within the tenant: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
  std::string description;
  std::string embedding_model;  // empty: lexical retrieval only
  ChunkOptions chunking;
  // Readable by every tenant through derived models that name it; only the system tenant's
  // spaces may be shared (enforced by the API).
  bool shared = false;
};

struct Space {
  std::string id;  // "ks_<ULID>"
  std::string name;
  std::string description;
  std::string embedding_model;
  ChunkOptions chunking;
  bool shared = false;
  int64_t created_at_ms = 0;
  int64_t documents = 0;
  int64_t chunks = 0;
  int64_t bytes = 0;  // sum of the documents' sizes
};

enum class DocumentStatus { kQueued, kProcessing, kReady, kFailed };
std::string_view DocumentStatusName(DocumentStatus s);

struct Document {
  std::string id;  // "doc_<ULID>"
  std::string space_id;
  std::string job_id;
  std::string name;  // the file name as uploaded
  std::string sha256;
  int64_t size_bytes = 0;
  std::string mime_type;  // as detected
  DocumentStatus status = DocumentStatus::kQueued;
  std::string error;  // kFailed: why
  int64_t pages = 0;
  int64_t ocr_pages = 0;
  int64_t chunks = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

struct Upload {
  std::string name;
  std::string bytes;
};

struct JobFile {
  std::string name;
  std::string document_id;  // empty when the file was refused before it was stored
  bool duplicate = false;   // same content as a document already in the space
  std::string status;       // "queued" | "processing" | "ready" | "failed"
  std::string error;
};

struct Job {
  std::string id;  // "job_<ULID>"
  std::string space_id;
  // "queued" (nothing started), "running", "succeeded" (all ready), "partial" (some failed),
  // "failed" (all failed).
  std::string status;
  int64_t total = 0, done = 0, failed = 0;  // done counts ready + failed
  std::vector<JobFile> files;
  int64_t created_at_ms = 0;
};

enum class RetrievalMode { kAuto, kLexical, kVector, kHybrid };
std::string_view RetrievalModeName(RetrievalMode m);
Result<RetrievalMode> ParseRetrievalMode(std::string_view name);

struct RetrievalSettings {
  int top_k = 5;                 // 1..100
  double score_threshold = 0;    // hits scoring below are dropped (score of the mode used)
  RetrievalMode mode = RetrievalMode::kAuto;  // auto: hybrid when the space has vectors
  double lexical_weight = 1.0;   // hybrid fusion weights
  double vector_weight = 1.0;
  std::string rerank_model;      // empty: no reranking
  int candidates = 50;           // per retriever, before fusion / reranking
};

// A space to search: the owner tenant and the space id (the caller decides what may be read).
struct SpaceRef {
  std::string tenant_id;
  std::string space_id;
};

struct SearchHit {
  int64_t chunk_id = 0;
  std::string tenant_id;
  std::string space_id;
  std::string document_id;
  std::string document_name;
  std::string text;
  std::vector<std::string> section_path;
  int page = 0;
  int64_t char_start = 0, char_end = 0;
  double score = 0;  // what ranked it: rerank > fused > lexical / vector
  std::optional<double> lexical_score;  // -bm25 (higher is better)
  std::optional<double> vector_score;   // cosine similarity
  std::optional<double> rerank_score;
};

// "Travel > Hotels": a section path as headings index it and citations show it.
std::string JoinSectionPath(const std::vector<std::string>& path);

// What an embedder returns: one vector per input text, in input order, and how many tokens the
// model read for them (metering). An embedder that does not count may return the vectors alone:
// n_tokens is then -1 (unknown).
struct Embeddings {
  Embeddings() = default;
  Embeddings(std::vector<std::vector<float>> v, int64_t tokens = -1)  // NOLINT: implicit by design
      : vectors(std::move(v)), n_tokens(tokens) {}
  std::vector<std::vector<float>> vectors;
  int64_t n_tokens = -1;
};

// How the platform plugs models and keys in (all optional).
using Embedder =
    std::function<Result<Embeddings>(std::string_view model, std::span<const std::string> texts)>;
using Reranker = std::function<Result<std::vector<float>>(
    std::string_view model, std::string_view query, std::span<const std::string> documents)>;
using CipherProvider =
    std::function<Result<std::shared_ptr<const crypto::DataCipher>>(std::string_view tenant_id)>;

// Reported once per document when its ingestion ends (for metering and audit).
struct IngestReport {
  std::string tenant_id;
  Document document;
  // The space's embedding model (empty when the space has none) and the tokens it read to embed
  // the document's chunks: the sum of Embeddings::n_tokens over the batches, 0 when the space has
  // no embedding model, the embedder does not count tokens, or the document failed before or
  // while embedding.
  std::string embedding_model;
  int64_t embedding_tokens = 0;
};

struct KnowledgeOptions {
  int ingest_threads = 1;
  Embedder embedder;
  Reranker reranker;
  CipherProvider ciphers;  // null: stored unsealed (tests)
  std::function<void(const IngestReport&)> on_document_done;
  int64_t max_document_bytes = int64_t{256} << 20;
  bool ocr = true;
};

class KnowledgeBase {
 public:
  // The per-tenant schema (module "knowledge") and the SQLite hook the tenant stores need
  // (FTS5 tokenizers): pass both to store::TenantStoresOptions.
  static std::vector<store::Migration> Migrations();
  static Status RegisterSqliteFunctions(sqlite3* db);

  // `stores` and `clock` must outlive this object. Starts the ingest workers (idle until
  // Recover() or AddDocuments gives them work).
  KnowledgeBase(store::TenantStores& stores, KnowledgeOptions options,
                const Clock& clock = *Clock::System());
  // Stops the workers; a document being processed is finished first.
  ~KnowledgeBase();
  KnowledgeBase(const KnowledgeBase&) = delete;
  KnowledgeBase& operator=(const KnowledgeBase&) = delete;

  // Brings each tenant's spaces up to date, then queues again every document left queued or
  // processing by an earlier process. Up to date: for a tenant with a data key, a space whose
  // full-text index still holds plain terms (written before index terms were keyed) is rebuilt
  // from its sealed chunks with keyed tokens, plaintext document names and job file lists are
  // sealed, and the database is then rewritten (VACUUM) and its WAL emptied, so that no freed
  // page keeps the old plaintext. A tenant whose upgrade fails is logged
  // ("knowledge_upgrade_failed") and left as it was, still searchable with plain terms; the
  // next Recover() tries again. Errors: the database's, when listing the documents to resume.
  Status Recover();

  // Spaces. Errors: kInvalidArgument (bad name/options), kAlreadyExists (name taken),
  // kNotFound "space 'x' does not exist" (also for other tenants' spaces: they do not exist here).
  Result<Space> CreateSpace(std::string_view tenant_id, const SpaceSpec& spec);
  Result<std::vector<Space>> ListSpaces(std::string_view tenant_id);
  Result<Space> GetSpace(std::string_view tenant_id, std::string_view id_or_name);
  // Removes the space, its documents, chunks, index and (unless shared with another document
  // of the tenant) blobs.
  Status DeleteSpace(std::string_view tenant_id, std::string_view id_or_name);

  // Stores the files and queues them; returns the job (status "queued"). Files that are empty or
  // above max_document_bytes are refused in the job (per file), the rest are queued. A file whose
  // content is already in the space is not stored again (JobFile::duplicate, its document id).
  // Errors: kNotFound (space), kInvalidArgument (no files), kUnavailable (storage).
  Result<Job> AddDocuments(std::string_view tenant_id, std::string_view space, std::vector<Upload> files);
  Result<Job> GetJob(std::string_view tenant_id, std::string_view job_id);
  Result<std::vector<Document>> ListDocuments(std::string_view tenant_id, std::string_view space);
  Result<Document> GetDocument(std::string_view tenant_id, std::string_view document_id);
  // The original bytes of a document. Errors: kNotFound.
  Result<std::string> DocumentBytes(std::string_view tenant_id, std::string_view document_id);
  // Removes the document, its chunks, index entries and (when no other document uses it) blob.
  Status DeleteDocument(std::string_view tenant_id, std::string_view document_id);

  // Searches the given spaces (each owned by its ref's tenant; the caller decides which spaces a
  // tenant may read). Auto mode is hybrid when a space has an embedding model and an embedder is
  // configured, else lexical. Errors: kInvalidArgument (empty query, bad settings, vector mode
  // without embeddings), kNotFound (a space does not exist), the embedder's and reranker's errors
  // when the mode needs them.
  Result<std::vector<SearchHit>> Search(std::span<const SpaceRef> spaces, std::string_view query,
                                        const RetrievalSettings& settings);

  // Blocks until no document of any tenant is queued or being processed (tests, CLI).
  void WaitIdle();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace yunzhi::knowledge
