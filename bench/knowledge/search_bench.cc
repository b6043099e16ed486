// Search latency on a large space: builds a space of N chunks (default 100,000) out of passages
// of the shared test collections (Cranfield abstracts, CMRC2018 paragraphs, the Markdown/text
// documents), recombined so every chunk is distinct, then times lexical and hybrid queries.
//
//   knowledge_search_bench [--chunks N] [--queries Q] [--dir /tmp/x] [--threads T]
//
// Vectors come from a fixed hashing embedder (384-d, bag of analysed terms): it costs what a
// vector lookup, the HNSW search and the fusion cost, but not a neural query embedding — that is
// measured separately (embedding benchmark) and adds to hybrid latency.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/knowledge/text_analysis.h"

namespace fs = std::filesystem;
using namespace yunzhi;

namespace {

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Passages: Cranfield abstracts, CMRC paragraphs and the paragraphs of the text documents.
std::vector<std::string> Passages() {
  std::vector<std::string> out;
  const fs::path data(YUNZHI_TESTDATA_DIR);
  std::ifstream corpus(data / "retrieval/cranfield/beir-format/corpus.jsonl");
  std::string line;
  while (std::getline(corpus, line)) {
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (!ec && v.is_object() && v.as_object().contains("text")) {
      out.emplace_back(v.as_object().at("text").as_string());
    }
  }
  boost::system::error_code ec;
  auto squad = boost::json::parse(Read(data / "retrieval/cmrc2018/cmrc2018_trial.squad.json"), ec);
  if (!ec) {
    for (const auto& article : squad.at("data").as_array()) {
      for (const auto& para : article.at("paragraphs").as_array()) {
        out.emplace_back(para.at("context").as_string());
      }
    }
  }
  return out;
}

Result<std::vector<std::vector<float>>> HashEmbed(std::string_view, std::span<const std::string> texts) {
  std::vector<std::vector<float>> out;
  for (const auto& t : texts) {
    std::vector<float> v(384, 0.0f);
    for (const auto& term : knowledge::Analyze(t)) v[std::hash<std::string>{}(term.text) % 384] += 1;
    double n = 0;
    for (float x : v) n += x * x;
    n = n > 0 ? std::sqrt(n) : 1;
    for (float& x : v) x = static_cast<float>(x / n);
    out.push_back(std::move(v));
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

uint64_t DirBytes(const fs::path& p) {
  uint64_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(p)) n += e.is_regular_file() ? e.file_size() : 0;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n_chunks = 100000;
  int n_queries = 500;
  int threads = 2;
  std::string dir = "/tmp/yunzhi-search-bench";
  bool reuse = false;  // --reuse: query the space a previous run built in --dir
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--reuse") reuse = true;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--reuse") {
      --i;
      continue;
    }
    if (a == "--chunks") n_chunks = std::atoll(argv[i + 1]);
    if (a == "--queries") n_queries = std::atoi(argv[i + 1]);
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  if (!reuse) fs::remove_all(dir);
  const std::vector<std::string> passages = Passages();
  std::printf("passages: %zu; building %lld chunks with %d ingest threads\n", passages.size(),
              static_cast<long long>(n_chunks), threads);

  store::TenantStoresOptions so;
  so.root = fs::path(dir) / "tenants";
  so.migrations.emplace_back("knowledge", knowledge::KnowledgeBase::Migrations());
  so.sqlite_connection_hooks.push_back(&knowledge::KnowledgeBase::RegisterSqliteFunctions);
  auto stores = store::TenantStores::Open(std::move(so));
  if (!stores) return std::fprintf(stderr, "%s\n", stores.error().ToString().c_str()), 1;
  knowledge::KnowledgeOptions ko;
  ko.ingest_threads = threads;
  ko.embedder = HashEmbed;
  knowledge::KnowledgeBase kb(**stores, std::move(ko));
  const std::string tenant = "ten_BENCH";
  const std::string modes[] = {"lexical", "hybrid"};
  knowledge::SpaceSpec spec;
  spec.name = "big";
  spec.embedding_model = "hash-384";
  auto space = reuse ? kb.GetSpace(tenant, "big") : kb.CreateSpace(tenant, spec);
  if (!space) return std::fprintf(stderr, "%s\n", space.error().ToString().c_str()), 1;
  if (reuse) n_chunks = 0;

  // Each document: 20 chunks' worth of passages (one passage ~ one chunk), recombined by a seeded
  // shuffle with a serial number so no two are equal.
  std::mt19937_64 rng(42);
  const int per_doc = 20;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t made = 0;
  int doc = 0;
  while (made < n_chunks) {
    std::vector<knowledge::Upload> batch;
    for (int d = 0; d < 50 && made < n_chunks; ++d, ++doc) {
      std::string text;
      for (int c = 0; c < per_doc && made < n_chunks; ++c, ++made) {
        text += "Passage " + std::to_string(made) + ". " + passages[rng() % passages.size()] + "\n\n";
      }
      batch.push_back({"doc" + std::to_string(doc) + ".txt", std::move(text)});
    }
    auto job = kb.AddDocuments(tenant, space->id, std::move(batch));
    if (!job) return std::fprintf(stderr, "%s\n", job.error().ToString().c_str()), 1;
  }
  kb.WaitIdle();
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto info = kb.GetSpace(tenant, space->id);
  std::printf("index built: %lld documents, %lld chunks in %.1f s (%.0f chunks/s); data dir %.1f MiB\n",
              static_cast<long long>(info->documents), static_cast<long long>(info->chunks), build_s,
              static_cast<double>(info->chunks) / build_s, static_cast<double>(DirBytes(dir)) / (1 << 20));

  // Queries: short phrases cut from passages (3-8 words / 4-10 CJK characters).
  std::vector<std::string> queries;
  for (int i = 0; i < n_queries; ++i) {
    const std::string& p = passages[rng() % passages.size()];
    auto terms = knowledge::Analyze(p);
    if (terms.size() < 8) { --i; continue; }
    size_t start = rng() % (terms.size() - 6);
    size_t len = 3 + rng() % 4;
    queries.push_back(p.substr(terms[start].start, terms[std::min(start + len, terms.size() - 1)].end - terms[start].start));
  }
  const knowledge::SpaceRef ref{tenant, space->id};
  for (const std::string& mode : modes) {
    knowledge::RetrievalSettings s;
    s.top_k = 10;
    s.mode = *knowledge::ParseRetrievalMode(mode);
    // Warm: the first hybrid query builds the HNSW graph from the stored vectors.
    const auto w0 = std::chrono::steady_clock::now();
    (void)kb.Search({&ref, 1}, queries[0], s);
    const double warm_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
    // Two passes over the queries: the first reads the index from disk into the page cache
    // (cold), the second is what a server that has been answering sees (warm).
    for (const char* pass : {"cold", "warm"}) {
      std::vector<double> lat;
      for (const auto& q : queries) {
        const auto a = std::chrono::steady_clock::now();
        auto hits = kb.Search({&ref, 1}, q, s);
        lat.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
        if (!hits) return std::fprintf(stderr, "%s\n", hits.error().ToString().c_str()), 1;
      }
      std::printf("%-8s %s (first query %.0f ms): %zu queries: p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
                  mode.c_str(), pass, warm_ms, lat.size(), Percentile(lat, 0.5), Percentile(lat, 0.99),
                  *std::max_element(lat.begin(), lat.end()));
      std::fflush(stdout);
    }
  }
  return 0;
}
