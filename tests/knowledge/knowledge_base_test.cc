// Knowledge spaces end to end on real files: upload real documents (Chinese and English, several
// formats, one corrupt), background ingestion, per-file errors, deduplication, lexical, vector
// and hybrid search, deletion, sealing at rest, crash recovery, tenant isolation.
#include "yunzhi/knowledge/knowledge_base.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include <fmt/format.h>
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

  // Opens the knowledge base with a data key for every tenant but `plain_tenant` (none for it).
  void OpenWithKey(KnowledgeOptions options = {}, const std::string& plain_tenant = "") {
    std::shared_ptr<const crypto::DataCipher> cipher = std::move(*crypto::DataCipher::Create(key_));
    options.ciphers =
        [cipher, plain_tenant](
            std::string_view tenant) -> Result<std::shared_ptr<const crypto::DataCipher>> {
      if (tenant == plain_tenant) return std::shared_ptr<const crypto::DataCipher>();
      return cipher;
    };
    Open(std::move(options));
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
  const std::string key_ = crypto::RandomBytes(crypto::DataCipher::kKeyBytes);
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
  // The chunk rows hold sealed text (the full-text index keeps keyed tokens, not the text).
  auto db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  auto rows = (*db)->Query("SELECT text FROM kb_chunks");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Text(0).find(marker), std::string::npos);
}

// Documents whose body, headings, table cells and file names hold marker words, ASCII and Chinese.
struct MarkedDocuments {
  std::vector<Upload> files = {
      {"Vantablorp-青铜龟甲.md",
       "# Grimblewarts 琥珀鲸鱼 handbook\n\n"
       "The Xylofrenzied procedure and 翡翠狐狸 are described here in detail.\n\n"
       "| item | code |\n|---|---|\n| Pomquistly | 紫檀星图 |\n"},
      {"Snorkelvane 珊瑚象棋.csv", "name,value\nQuaggaroons,孔雀石碑\nplain,words\n"},
  };
  // Each searchable marker and the document it must find.
  std::vector<std::pair<std::string, std::string>> searchable = {
      {"Grimblewarts", "Vantablorp-青铜龟甲.md"},  {"琥珀鲸鱼", "Vantablorp-青铜龟甲.md"},
      {"Xylofrenzied", "Vantablorp-青铜龟甲.md"},  {"翡翠狐狸", "Vantablorp-青铜龟甲.md"},
      {"Pomquistly", "Vantablorp-青铜龟甲.md"},    {"紫檀星图", "Vantablorp-青铜龟甲.md"},
      {"Quaggaroons", "Snorkelvane 珊瑚象棋.csv"}, {"孔雀石碑", "Snorkelvane 珊瑚象棋.csv"},
  };
  std::vector<std::string> file_name_markers = {"Vantablorp", "青铜龟甲", "Snorkelvane",
                                                "珊瑚象棋"};

  // Every byte string a marker could leave on disk: as written, lower and upper case, and each
  // term the analyser makes of it (case-folded, stemmed, CJK words). Single CJK characters (3
  // bytes) are left out: they occur by chance in kilobytes of ciphertext.
  std::vector<std::string> Needles() const {
    std::vector<std::string> out;
    auto add = [&](const std::string& m) {
      std::string lower = m, upper = m;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      for (const std::string& n : {m, lower, upper}) out.push_back(n);
      for (const Term& t : Analyze(m)) {
        if (t.text.size() >= 5) out.push_back(t.text);
      }
    };
    for (const auto& [m, doc] : searchable) add(m);
    for (const auto& m : file_name_markers) add(m);
    return out;
  }
};

// Every file under `dir` (database, WAL, blobs) and the needles found in it, ASCII case ignored.
std::vector<std::string> PlaintextFound(const fs::path& dir,
                                        const std::vector<std::string>& needles,
                                        std::set<std::string>* files_seen) {
  std::vector<std::string> found;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    files_seen->insert(e.path().filename().string());
    std::string bytes = Read(e.path());
    for (char& c : bytes) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const std::string& n : needles) {
      std::string lower = n;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (bytes.find(lower) != std::string::npos) found.push_back(n + " in " + e.path().string());
    }
  }
  return found;
}

TEST_F(KnowledgeBaseTest, NoMarkerWordIsReadableAnywhereInTheTenantsDirectory) {
  OpenWithKey();
  const MarkedDocuments marked;
  Space space = MakeSpace(tenant_a_, "secret");
  Job job = AddAndWait(tenant_a_, "secret", marked.files);
  ASSERT_EQ(job.status, "succeeded");
  EXPECT_EQ(job.files[0].name, "Vantablorp-青铜龟甲.md");  // job file lists open again
  const std::vector<std::string> needles = marked.Needles();
  ASSERT_GE(needles.size(), 30u);

  auto check_search = [&] {
    for (const auto& [marker, doc] : marked.searchable) {
      auto hits = Search(tenant_a_, space.id, marker);
      ASSERT_FALSE(hits.empty()) << marker;
      EXPECT_EQ(hits[0].document_name, doc) << marker;
      // Heading words are in the section path, the rest in the text; both were sealed.
      EXPECT_THAT(JoinSectionPath(hits[0].section_path) + "\n" + hits[0].text, HasSubstr(marker));
    }
    auto docs = kb_->ListDocuments(tenant_a_, "secret");
    ASSERT_TRUE(docs);
    std::set<std::string> names;
    for (const auto& d : *docs) names.insert(d.name);
    EXPECT_EQ(names, (std::set<std::string>{"Vantablorp-青铜龟甲.md", "Snorkelvane 珊瑚象棋.csv"}));
  };
  check_search();

  // The index holds tokens only (fts5vocab would show any word).
  auto db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  auto vocab = (*db)->Query(fmt::format("SELECT term FROM \"fts_{}_vocab\"", space.id));
  ASSERT_TRUE(vocab);
  ASSERT_GT(vocab->size(), 10u);
  for (const auto& r : *vocab) {
    EXPECT_EQ(r.Text(0).size(), crypto::TermHasher::kTokenChars);
    EXPECT_EQ(r.Text(0).find_first_not_of("abcdefghijklmnopqrstuvwxyz234567"), std::string::npos);
  }
  db->reset();

  // While open: the database, its WAL and the blobs.
  std::set<std::string> files;
  EXPECT_THAT(PlaintextFound(stores_->DirOf(tenant_a_), needles, &files), ::testing::IsEmpty());
  EXPECT_TRUE(files.count("tenant.db-wal")) << "the WAL was not scanned";
  // Closed (the WAL checkpointed into the database file), then opened again: still searchable.
  const fs::path dir = stores_->DirOf(tenant_a_);
  kb_.reset();
  stores_.reset();
  files.clear();
  EXPECT_THAT(PlaintextFound(dir, needles, &files), ::testing::IsEmpty());
  EXPECT_TRUE(files.count("tenant.db"));
  OpenWithKey();
  check_search();

  // Deleting from a keyed index removes exactly what was inserted: nothing is left.
  auto docs = kb_->ListDocuments(tenant_a_, "secret");
  ASSERT_TRUE(docs);
  for (const auto& d : *docs) ASSERT_TRUE(kb_->DeleteDocument(tenant_a_, d.id));
  db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  auto left = (*db)->QueryOne(fmt::format("SELECT count(*) FROM \"fts_{}_vocab\"", space.id));
  ASSERT_TRUE(left && *left);
  EXPECT_EQ((**left).Int(0), 0);
}

// The same documents in a keyed space (tenant A) and a plain-term space (tenant B, no key) rank
// identically with identical scores: one token per term keeps every BM25 statistic.
TEST_F(KnowledgeBaseTest, KeyedIndexRanksExactlyAsPlainTerms) {
  OpenWithKey({}, tenant_b_);
  Space keyed = MakeSpace(tenant_a_, "kb");
  Space plain = MakeSpace(tenant_b_, "kb");
  std::vector<Upload> files = {
      {"zh.md", Read(Docs() / "md/chatchat-distributed-training-zh.md")},
      {"wiki.md", Read(Docs() / "md/docling-wiki.md")},
      {"cups.csv", Read(Docs() / "csv/docling-csv-comma.csv")},
      {"10k.html", Read(Docs() / "html/unstructured-example-10k-1p.html")},
  };
  ASSERT_EQ(AddAndWait(tenant_a_, "kb", files).status, "succeeded");
  ASSERT_EQ(AddAndWait(tenant_b_, "kb", files).status, "succeeded");
  auto db_b = stores_->DatabaseOf(tenant_b_);
  ASSERT_TRUE(db_b);
  auto plain_terms = (*db_b)->QueryOne(
      fmt::format("SELECT count(*) FROM \"fts_{}_vocab\" WHERE term = 'mainfram'", plain.id));
  ASSERT_TRUE(plain_terms && *plain_terms);
  EXPECT_EQ((**plain_terms).Int(0), 1);  // without a key, terms stay plain

  size_t compared = 0;
  for (const char* q : {"数据并行和模型并行有什么区别", "IBM mainframe punch-card tabulating",
                        "the of and", "revenue fiscal year", "梯度 通信", "cups"}) {
    auto a = Search(tenant_a_, keyed.id, q);
    auto b = Search(tenant_b_, plain.id, q);
    ASSERT_EQ(a.size(), b.size()) << q;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].document_name, b[i].document_name) << q;
      EXPECT_EQ(a[i].text, b[i].text) << q;
      ASSERT_TRUE(a[i].lexical_score && b[i].lexical_score);
      EXPECT_DOUBLE_EQ(*a[i].lexical_score, *b[i].lexical_score) << q;
      ++compared;
    }
  }
  EXPECT_GT(compared, 15u);
}

// A tenant written before index terms were keyed: plain terms in the index, plain names. With
// the tenant key, Recover() rebuilds the index with tokens, seals the names and rewrites the
// file; search and listing work as before.
TEST_F(KnowledgeBaseTest, RecoverRebuildsAPlainTermIndexWithKeyedTokens) {
  OpenWithKey();
  const MarkedDocuments marked;
  Space space = MakeSpace(tenant_a_, "old");
  {
    // Turn the space back into the earlier format before anything is ingested.
    auto db = stores_->DatabaseOf(tenant_a_);
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Execute(fmt::format("DROP TABLE \"fts_{}_vocab\"", space.id)));
    ASSERT_TRUE((*db)->Execute(fmt::format("DROP TABLE \"fts_{}\"", space.id)));
    ASSERT_TRUE((*db)->Execute(fmt::format(
        "CREATE VIRTUAL TABLE \"fts_{0}\" USING fts5(heading, body, content='', "
        "tokenize='yunzhi'); CREATE VIRTUAL TABLE \"fts_{0}_vocab\" USING "
        "fts5vocab(\"fts_{0}\", 'row'); INSERT INTO \"fts_{0}\" (\"fts_{0}\", rank) VALUES "
        "('rank', 'yunzhi_bm25(2.0, 1.0)'); UPDATE kb_spaces SET index_format = 0",
        space.id)));
  }
  Job job = AddAndWait(tenant_a_, "old", marked.files);
  ASSERT_EQ(job.status, "succeeded");
  {
    auto db = stores_->DatabaseOf(tenant_a_);
    ASSERT_TRUE(db);
    std::string files = "[";
    for (const auto& f : job.files) {
      files += fmt::format(
          "{}{{\"name\":\"{}\",\"document_id\":\"{}\",\"duplicate\":false,"
          "\"error\":\"\"}}",
          files.size() > 1 ? "," : "", f.name, f.document_id);
    }
    files += "]";
    ASSERT_TRUE((*db)->Execute("UPDATE kb_jobs SET files = ?, files_sealed = 0 WHERE id = ?",
                               {files, job.id}));
    auto docs = (*db)->Query("SELECT id FROM kb_documents");
    ASSERT_TRUE(docs);
    for (const auto& r : *docs) {
      auto d = kb_->GetDocument(tenant_a_, r.Text(0));
      ASSERT_TRUE(d);
      ASSERT_TRUE((*db)->Execute("UPDATE kb_documents SET name = ?, name_sealed = 0 WHERE id = ?",
                                 {d->name, d->id}));
    }
    // Pages the old index freed as it merged its segments still hold its words.
    ASSERT_TRUE((*db)->Execute("CREATE TABLE old_segments (words TEXT)"));
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE((*db)->Execute(
          "INSERT INTO old_segments VALUES (?)",
          {fmt::format("{:04} grimblewart xylofrenzi {}", i, std::string(3000, 'z'))}));
    }
    ASSERT_TRUE((*db)->Execute("DROP TABLE old_segments"));
    // The old format: words readable in the index.
    auto term = (*db)->QueryOne(
        fmt::format("SELECT count(*) FROM \"fts_{}_vocab\" WHERE term = 'grimblewart'", space.id));
    ASSERT_TRUE(term && *term);
    ASSERT_EQ((**term).Int(0), 1);
  }
  ASSERT_EQ(Search(tenant_a_, space.id, "Xylofrenzied").size(), 1u);  // old format searchable
  ASSERT_EQ(kb_->GetJob(tenant_a_, job.id)->files.at(1).name, "Snorkelvane 珊瑚象棋.csv");

  kb_.reset();
  stores_.reset();
  OpenWithKey();
  ASSERT_TRUE(kb_->Recover());
  kb_->WaitIdle();
  for (const auto& [marker, doc] : marked.searchable) {
    auto hits = Search(tenant_a_, space.id, marker);
    ASSERT_FALSE(hits.empty()) << marker;
    EXPECT_EQ(hits[0].document_name, doc) << marker;
  }
  auto db = stores_->DatabaseOf(tenant_a_);
  ASSERT_TRUE(db);
  auto format = (*db)->QueryOne("SELECT index_format FROM kb_spaces");
  ASSERT_TRUE(format && *format);
  EXPECT_EQ((**format).Int(0), 1);
  auto sealed = (*db)->QueryOne(
      "SELECT (SELECT min(name_sealed) FROM kb_documents), (SELECT min(files_sealed) FROM "
      "kb_jobs)");
  ASSERT_TRUE(sealed && *sealed);
  EXPECT_EQ((**sealed).Int(0), 1);
  EXPECT_EQ((**sealed).Int(1), 1);
  EXPECT_EQ(kb_->GetJob(tenant_a_, job.id)->files.at(1).name, "Snorkelvane 珊瑚象棋.csv");
  // The file was rewritten: no free page is left to hold the old index's words.
  auto free_pages = (*db)->QueryOne("PRAGMA freelist_count");
  ASSERT_TRUE(free_pages && *free_pages);
  EXPECT_EQ((**free_pages).Int(0), 0);
  db->reset();
  // A second Recover() has nothing to do.
  ASSERT_TRUE(kb_->Recover());
  const fs::path dir = stores_->DirOf(tenant_a_);
  std::set<std::string> files;
  EXPECT_THAT(PlaintextFound(dir, marked.Needles(), &files), ::testing::IsEmpty());
  kb_.reset();
  stores_.reset();
  EXPECT_THAT(PlaintextFound(dir, marked.Needles(), &files), ::testing::IsEmpty());
}

// A keyed index cannot be searched once the tenant's key is gone: a clear error, no crash.
TEST_F(KnowledgeBaseTest, KeyedSpaceWithoutTheKeyFailsClearly) {
  OpenWithKey();
  Space space = MakeSpace(tenant_a_, "locked");
  AddAndWait(tenant_a_, "locked", {{"a.txt", "Lighthouse keepers log the weather."}});
  Open();  // no key any more
  const SpaceRef ref{tenant_a_, space.id};
  auto hits = kb_->Search({&ref, 1}, "lighthouse", {});
  ASSERT_FALSE(hits);
  EXPECT_THAT(hits.error().message, HasSubstr("no key"));
}

TEST_F(KnowledgeBaseTest, IngestReportCountsTheEmbeddingTokens) {
  std::mutex mu;
  int64_t tokens_read = 0;  // what the embedder said it read while ingesting
  std::vector<IngestReport> reports;
  KnowledgeOptions options;
  options.embedder = [&](std::string_view model,
                         std::span<const std::string> texts) -> Result<Embeddings> {
    YZ_ASSIGN_OR_RETURN(auto v, HashEmbed(model, texts));
    int64_t n = 0;
    for (const auto& t : texts) n += static_cast<int64_t>(CountTokens(t)) + 2;  // [CLS] [SEP]
    std::lock_guard lock(mu);
    tokens_read += n;
    return Embeddings(std::move(v), n);
  };
  options.on_document_done = [&](const IngestReport& r) {
    std::lock_guard lock(mu);
    reports.push_back(r);
  };
  Open(std::move(options));
  MakeSpace(tenant_a_, "vec", "test-embedder");
  MakeSpace(tenant_a_, "lex");
  std::string long_text;
  for (int i = 0; i < 3000; ++i) long_text += "Sentence " + std::to_string(i) + " about tides. ";
  AddAndWait(tenant_a_, "vec", {{"long.txt", long_text}, {"short.txt", "Harbour pilots."}});
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(reports.size(), 2u);
    int64_t reported = 0;
    for (const auto& r : reports) {
      EXPECT_EQ(r.tenant_id, tenant_a_);
      EXPECT_EQ(r.embedding_model, "test-embedder");
      EXPECT_GT(r.embedding_tokens, 0) << r.document.name;
      reported += r.embedding_tokens;
    }
    EXPECT_EQ(reported, tokens_read);  // every token the model read, once
    auto& longer = reports[0].document.name == "long.txt" ? reports[0] : reports[1];
    EXPECT_GT(longer.document.chunks, 32);  // several embedding batches (32 chunks each) summed
    reports.clear();
  }
  AddAndWait(tenant_a_, "lex", {{"lex.txt", "No embedding model here."}});
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].embedding_model, "");
    EXPECT_EQ(reports[0].embedding_tokens, 0);
    reports.clear();
  }
  // An embedder that returns vectors alone: the tokens are unknown, reported as 0.
  KnowledgeOptions uncounted;
  uncounted.on_document_done = [&](const IngestReport& r) {
    std::lock_guard lock(mu);
    reports.push_back(r);
  };
  Open(std::move(uncounted));  // HashEmbed: no token count
  AddAndWait(tenant_a_, "vec", {{"more.txt", "Lock keepers open the gates at dawn."}});
  std::lock_guard lock(mu);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].document.status, DocumentStatus::kReady);
  EXPECT_EQ(reports[0].embedding_model, "test-embedder");
  EXPECT_EQ(reports[0].embedding_tokens, 0);
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
