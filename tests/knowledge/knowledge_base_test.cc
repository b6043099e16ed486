// Knowledge spaces end to end on real files: upload real documents (Chinese and English, several
// formats, one corrupt), background ingestion, per-file errors, deduplication, lexical, vector
// and hybrid search, deletion, sealing at rest, crash recovery, tenant isolation.
#include "yunzhi/knowledge/knowledge_base.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/knowledge/text_analysis.h"
#include "support/process.h"

// Designated initializers leave the other fields at their defaults, as intended.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace yunzhi::knowledge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path Docs() { return fs::path(YUNZHI_TESTDATA_DIR) / "docs"; }

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A deterministic test embedder: hashed bag of analysed terms, L2-normalised (texts sharing
// words are close). It stands in for a real model so the vector plumbing can be checked exactly.
Result<std::vector<std::vector<float>>> HashEmbed(std::string_view, std::span<const std::string> texts) {
  std::vector<std::vector<float>> out;
  for (const auto& t : texts) {
    std::vector<float> v(64, 0.0f);
    for (const Term& term : Analyze(t)) {
      v[std::hash<std::string>{}(term.text) % v.size()] += 1.0f;
    }
    double norm = 0;
    for (float x : v) norm += x * x;
    norm = std::sqrt(norm);
    if (norm == 0) norm = 1;
    for (float& x : v) x = static_cast<float>(x / norm);
    out.push_back(std::move(v));
  }
  return out;
}

class KnowledgeBaseTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(KnowledgeOptions options = {}) {
    kb_.reset();
    stores_.reset();
    store::TenantStoresOptions so;
    so.root = fs::path(tmp_.path()) / "tenants";
    so.migrations.emplace_back("knowledge", KnowledgeBase::Migrations());
    so.sqlite_connection_hooks.push_back(&KnowledgeBase::RegisterSqliteFunctions);
    auto stores = store::TenantStores::Open(std::move(so));
    ASSERT_TRUE(stores) << stores.error().ToString();
    stores_ = std::move(*stores);
    if (!options.embedder) options.embedder = HashEmbed;
    options.ingest_threads = 2;
    kb_ = std::make_unique<KnowledgeBase>(*stores_, std::move(options));
  }

  Space MakeSpace(const std::string& tenant, const std::string& name, std::string model = "") {
    SpaceSpec spec;
    spec.name = name;
    spec.embedding_model = std::move(model);
    auto s = kb_->CreateSpace(tenant, spec);
    EXPECT_TRUE(s) << s.error().ToString();
    return s ? *s : Space{};
  }

  Job AddAndWait(const std::string& tenant, const std::string& space, std::vector<Upload> files) {
    auto job = kb_->AddDocuments(tenant, space, std::move(files));
    EXPECT_TRUE(job) << job.error().ToString();
    kb_->WaitIdle();
    auto done = kb_->GetJob(tenant, job->id);
    EXPECT_TRUE(done);
    return *done;
  }

  std::vector<SearchHit> Search(const std::string& tenant, const std::string& space_id,
                                const std::string& q, RetrievalMode mode = RetrievalMode::kLexical) {
    RetrievalSettings s;
    s.mode = mode;
    const SpaceRef ref{tenant, space_id};
    auto hits = kb_->Search({&ref, 1}, q, s);
    EXPECT_TRUE(hits) << hits.error().ToString();
    return hits ? *hits : std::vector<SearchHit>{};
  }

  testing::TempDir tmp_;
  std::unique_ptr<store::TenantStores> stores_;
  std::unique_ptr<KnowledgeBase> kb_;
  const std::string tenant_a_ = "ten_AAAA";
  const std::string tenant_b_ = "ten_BBBB";
};

TEST_F(KnowledgeBaseTest, MixedBatchIngestsEverythingButTheCorruptFile) {
  Space space = MakeSpace(tenant_a_, "handbook");
  std::vector<Upload> files = {
      {"分布式训练技术原理.md", Read(Docs() / "md/chatchat-distributed-training-zh.md")},
      {"wiki.md", Read(Docs() / "md/docling-wiki.md")},
      {"cups.csv", Read(Docs() / "csv/docling-csv-comma.csv")},
      {"10k.html", Read(Docs() / "html/unstructured-example-10k-1p.html")},
      {"broken.docx", std::string("PK\x03\x04 this is not really a zip archive", 38)},
      {"old.doc", Read(Docs() / "legacy/unstructured-fake.doc")},
      {"empty.txt", ""},
  };
  Job job = AddAndWait(tenant_a_, "handbook", std::move(files));
  EXPECT_EQ(job.total, 7);
  EXPECT_EQ(job.done, 7);
  EXPECT_EQ(job.failed, 3);
  EXPECT_EQ(job.status, "partial");
  std::map<std::string, JobFile> by_name;
  for (const auto& f : job.files) by_name[f.name] = f;
  EXPECT_EQ(by_name["wiki.md"].status, "ready");
  EXPECT_EQ(by_name["分布式训练技术原理.md"].status, "ready");
  EXPECT_EQ(by_name["cups.csv"].status, "ready");
  EXPECT_EQ(by_name["10k.html"].status, "ready");
  EXPECT_EQ(by_name["broken.docx"].status, "failed");
  EXPECT_FALSE(by_name["broken.docx"].error.empty());
  EXPECT_THAT(by_name["old.doc"].error, HasSubstr("unsupported"));
  EXPECT_THAT(by_name["empty.txt"].error, HasSubstr("empty"));

  auto docs = kb_->ListDocuments(tenant_a_, "handbook");
  ASSERT_TRUE(docs);
  EXPECT_EQ(docs->size(), 6u);  // the empty file was refused before it was stored
  for (const auto& d : *docs) {
    if (d.status == DocumentStatus::kReady) EXPECT_GT(d.chunks, 0) << d.name;
  }
  auto s = kb_->GetSpace(tenant_a_, "handbook");
  ASSERT_TRUE(s);
  EXPECT_GT(s->chunks, 3);

  // Chinese words find the Chinese document; English the English one.
  auto zh = Search(tenant_a_, space.id, "数据并行和模型并行有什么区别");
  ASSERT_FALSE(zh.empty());
  EXPECT_EQ(zh[0].document_name, "分布式训练技术原理.md");
  auto en = Search(tenant_a_, space.id, "IBM mainframe punch-card tabulating");
  ASSERT_FALSE(en.empty());
  EXPECT_EQ(en[0].document_name, "wiki.md");
  EXPECT_TRUE(en[0].lexical_score.has_value());
  EXPECT_GT(en[0].score, 0);
}

TEST_F(KnowledgeBaseTest, SameContentIsStoredOnceAndDeletionRemovesEverything) {
  Space space = MakeSpace(tenant_a_, "docs");
  const std::string text = "The zebrafish protocol requires calibrated incubators at 28 degrees.";
  Job first = AddAndWait(tenant_a_, "docs", {{"protocol.txt", text}, {"copy.txt", text}});
  EXPECT_EQ(first.total, 2);
  ASSERT_EQ(first.files.size(), 2u);
  EXPECT_FALSE(first.files[0].duplicate);
  EXPECT_TRUE(first.files[1].duplicate);
  EXPECT_EQ(first.files[0].document_id, first.files[1].document_id);
  Job again = AddAndWait(tenant_a_, "docs", {{"again.txt", text}});
  EXPECT_TRUE(again.files[0].duplicate);
  auto docs = kb_->ListDocuments(tenant_a_, "docs");
  ASSERT_TRUE(docs);
  ASSERT_EQ(docs->size(), 1u);
  auto bytes = kb_->DocumentBytes(tenant_a_, (*docs)[0].id);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, text);

  ASSERT_EQ(Search(tenant_a_, space.id, "zebrafish incubators").size(), 1u);
  ASSERT_TRUE(kb_->DeleteDocument(tenant_a_, (*docs)[0].id));
  EXPECT_TRUE(Search(tenant_a_, space.id, "zebrafish incubators").empty());
  EXPECT_EQ(kb_->GetDocument(tenant_a_, (*docs)[0].id).error().code, Code::kNotFound);
  // The blob went with the last document that used it.
  size_t blobs = 0;
  for (auto& e : fs::recursive_directory_iterator(stores_->DirOf(tenant_a_) / "blobs" / "sha256")) {
    blobs += e.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(blobs, 0u);

  // Re-adding works, and deleting the space removes it whole.
  AddAndWait(tenant_a_, "docs", {{"protocol.txt", text}});
  ASSERT_TRUE(kb_->DeleteSpace(tenant_a_, "docs"));
  EXPECT_EQ(kb_->GetSpace(tenant_a_, "docs").error().code, Code::kNotFound);
  const SpaceRef ref{tenant_a_, space.id};
  EXPECT_FALSE(kb_->Search({&ref, 1}, "zebrafish", {}));
}

TEST_F(KnowledgeBaseTest, VectorAndHybridSearchUseTheEmbeddings) {
  Space space = MakeSpace(tenant_a_, "vec", "hash-embedder");
  AddAndWait(tenant_a_, "vec",
             {{"a.txt", "Solar panels convert sunlight into electricity for the grid."},
              {"b.txt", "The bakery sells sourdough bread and croissants every morning."},
              {"c.txt", "Wind turbines and solar farms supply renewable electricity."}});
  auto vec = Search(tenant_a_, space.id, "solar electricity", RetrievalMode::kVector);
  ASSERT_GE(vec.size(), 2u);
  EXPECT_NE(vec[0].document_name, "b.txt");
  EXPECT_TRUE(vec[0].vector_score.has_value());
  EXPECT_FALSE(vec[0].lexical_score.has_value());
  EXPECT_GT(*vec[0].vector_score, 0.3);
  auto hybrid = Search(tenant_a_, space.id, "sourdough bread", RetrievalMode::kAuto);
  ASSERT_FALSE(hybrid.empty());
  EXPECT_EQ(hybrid[0].document_name, "b.txt");
  EXPECT_TRUE(hybrid[0].lexical_score.has_value());
  EXPECT_TRUE(hybrid[0].vector_score.has_value());

  // A new document joins the loaded index; a deleted one leaves it.
  Job j = AddAndWait(tenant_a_, "vec", {{"d.txt", "Geothermal heat pumps warm houses."}});
  auto geo = Search(tenant_a_, space.id, "geothermal heat pumps", RetrievalMode::kVector);
  ASSERT_FALSE(geo.empty());
  EXPECT_EQ(geo[0].document_name, "d.txt");
  ASSERT_TRUE(kb_->DeleteDocument(tenant_a_, j.files[0].document_id));
  for (const auto& h : Search(tenant_a_, space.id, "geothermal heat pumps", RetrievalMode::kVector)) {
    EXPECT_NE(h.document_name, "d.txt");
  }
}

TEST_F(KnowledgeBaseTest, SealedAtRestWithTheTenantKey) {
  auto key = crypto::RandomBytes(crypto::DataCipher::kKeyBytes);
  std::shared_ptr<const crypto::DataCipher> cipher = std::move(*crypto::DataCipher::Create(key));
  KnowledgeOptions options;
  options.ciphers = [cipher](std::string_view) -> Result<std::shared_ptr<const crypto::DataCipher>> {
    return cipher;
  };
  Open(std::move(options));
  Space space = MakeSpace(tenant_a_, "secret");
  const std::string marker = "QuokkaMarker7731";
  AddAndWait(tenant_a_, "secret",
             {{"memo.txt", "Internal memo. The launch codename is " + marker + " for Q3."}});
  auto hits = Search(tenant_a_, space.id, "launch codename");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_THAT(hits[0].text, HasSubstr(marker));
  // No blob holds the plaintext.
  for (auto& e : fs::recursive_directory_iterator(stores_->DirOf(tenant_a_) / "blobs")) {
    if (e.is_regular_file()) EXPECT_EQ(Read(e.path()).find(marker), std::string::npos) << e.path();
  }
  // The chunk rows hold sealed text (the full-text index keeps terms, not the text).
  auto db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  auto rows = (*db)->Query("SELECT text FROM kb_chunks");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Text(0).find(marker), std::string::npos);
}

TEST_F(KnowledgeBaseTest, RecoverFinishesDocumentsAKilledProcessLeft) {
  Space space = MakeSpace(tenant_a_, "recover");
  // What a process killed mid-ingestion leaves: a stored blob and a row stuck in "processing".
  auto blobs = stores_->Blobs(tenant_a_);
  ASSERT_TRUE(blobs);
  const std::string text = "Orphaned document about lighthouse maintenance schedules.";
  auto info = (*blobs)->Put(text);
  ASSERT_TRUE(info);
  auto db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  ASSERT_TRUE((*db)->Execute("INSERT INTO kb_jobs (id, space_id, files, created_at_ms) VALUES "
                             "('job_X', ?, '[{\"name\":\"l.txt\",\"document_id\":\"doc_X\","
                             "\"duplicate\":false,\"error\":\"\"}]', 0)",
                             {space.id}));
  ASSERT_TRUE((*db)->Execute(
      "INSERT INTO kb_documents (id, space_id, job_id, name, sha256, blob, sealed, size_bytes, "
      "status, created_at_ms, updated_at_ms) VALUES ('doc_X', ?, 'job_X', 'l.txt', ?, ?, 0, ?, "
      "'processing', 0, 0)",
      {space.id, crypto::Sha256Hex(text), info->digest, static_cast<int64_t>(text.size())}));
  EXPECT_TRUE(Search(tenant_a_, space.id, "lighthouse").empty());
  ASSERT_TRUE(kb_->Recover());
  kb_->WaitIdle();
  auto job = kb_->GetJob(tenant_a_, "job_X");
  ASSERT_TRUE(job);
  EXPECT_EQ(job->status, "succeeded");
  EXPECT_EQ(Search(tenant_a_, space.id, "lighthouse").size(), 1u);
}

TEST_F(KnowledgeBaseTest, TenantsNeverSeeEachOther) {
  Space a = MakeSpace(tenant_a_, "shared-name");
  Job job = AddAndWait(tenant_a_, "shared-name", {{"a.txt", "Tenant A's pricing sheet for walnuts."}});
  // B may use the same name: a different space in a different store.
  Space b = MakeSpace(tenant_b_, "shared-name");
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(kb_->GetSpace(tenant_b_, a.id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->ListDocuments(tenant_b_, a.id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->GetJob(tenant_b_, job.id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->GetDocument(tenant_b_, job.files[0].document_id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->DocumentBytes(tenant_b_, job.files[0].document_id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->DeleteDocument(tenant_b_, job.files[0].document_id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->DeleteSpace(tenant_b_, a.id).error().code, Code::kNotFound);
  EXPECT_EQ(kb_->AddDocuments(tenant_b_, a.id, {{"x.txt", "x"}}).error().code, Code::kNotFound);
  const SpaceRef wrong{tenant_b_, a.id};
  EXPECT_EQ(kb_->Search({&wrong, 1}, "walnuts", {}).error().code, Code::kNotFound);
  EXPECT_TRUE(Search(tenant_b_, b.id, "walnuts").empty());
  EXPECT_EQ(Search(tenant_a_, a.id, "walnuts").size(), 1u);
}

TEST_F(KnowledgeBaseTest, BadRequestsGetClearErrors) {
  EXPECT_EQ(kb_->CreateSpace(tenant_a_, {.name = "bad name!"}).error().code, Code::kInvalidArgument);
  EXPECT_EQ(kb_->CreateSpace(tenant_a_, {.name = ""}).error().code, Code::kInvalidArgument);
  SpaceSpec tiny{.name = "tiny"};
  tiny.chunking.max_tokens = 4;
  EXPECT_EQ(kb_->CreateSpace(tenant_a_, tiny).error().code, Code::kInvalidArgument);
  MakeSpace(tenant_a_, "ok");
  EXPECT_EQ(kb_->CreateSpace(tenant_a_, {.name = "ok"}).error().code, Code::kAlreadyExists);
  EXPECT_EQ(kb_->AddDocuments(tenant_a_, "ok", {}).error().code, Code::kInvalidArgument);
  EXPECT_EQ(kb_->AddDocuments(tenant_a_, "nope", {{"a", "b"}}).error().code, Code::kNotFound);
  auto space = kb_->GetSpace(tenant_a_, "ok");
  const SpaceRef ref{tenant_a_, space->id};
  EXPECT_EQ(kb_->Search({&ref, 1}, "  ", {}).error().code, Code::kInvalidArgument);
  RetrievalSettings bad;
  bad.top_k = 0;
  EXPECT_EQ(kb_->Search({&ref, 1}, "x", bad).error().code, Code::kInvalidArgument);
  // FTS5 query syntax in a user's query is just text.
  auto hits = kb_->Search({&ref, 1}, "\"unbalanced AND OR NOT (* ^", {});
  EXPECT_TRUE(hits) << hits.error().ToString();
  EXPECT_EQ(kb_->CreateSpace("../etc", {.name = "x"}).error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace yunzhi::knowledge
